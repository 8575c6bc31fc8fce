"""The provider port (base.py) and its adapters: local, aws, gcp and digitalocean.

Each cloud adapter keeps what translates its answers apart (``<cloud>_codec.py``, sharing
codec.py) and imports its SDK only when loaded. Providers import nothing of pipeline or bot.
"""
