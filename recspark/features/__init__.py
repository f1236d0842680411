"""Featurize: id maps, user-item pairs, the held-out split, the training set with negatives."""
