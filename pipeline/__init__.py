"""The domain core: configuration, the command language, plans, runs, policy, state.

errors.py holds ByoiError, the root of every exception byoi defines; it imports nothing, so
every package may import it. May import providers.base only; never a chat SDK, a cloud SDK or bot.
"""
