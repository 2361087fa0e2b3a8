"""Sparse-reward control tasks as text (FrozenLake, Sokoban) and their numeric views."""
