"""Pokémon battle outcome classifier: data, simulator, features, models, training, tracking."""
