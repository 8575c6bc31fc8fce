"""The domain core: configuration, the command language, plans, runs, policy, state.

May import providers.base only; never a chat SDK, a cloud SDK or bot.
"""
