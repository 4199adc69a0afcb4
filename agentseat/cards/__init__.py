"""Adaptive Cards: checking a card against what Teams supports (1.5), and the templates `send_card` offers."""
