"""Agents: PETS-style MPC over a learned model, and random exploration."""
from fastmbrl.agents.base import Agent, action_bounds
from fastmbrl.agents.pets import PETS
from fastmbrl.agents.random import RandomAgent

__all__ = ["Agent", "PETS", "RandomAgent", "action_bounds"]
