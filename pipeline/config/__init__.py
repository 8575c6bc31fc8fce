"""byoi.yml and Cloud 66 manifests: the configuration model, its keys and its loader.

May import providers.base (server specs) only.
"""
