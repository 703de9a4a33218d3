"""Agents: PETS-style MPC over a learned model, soft actor-critic (SAC, also the actor-critic of
MBPO and its model-based-gradient variants), and random exploration."""
from fastmbrl.agents.base import Agent, action_bounds
from fastmbrl.agents.pets import PETS
from fastmbrl.agents.random import RandomAgent
from fastmbrl.agents.sac import SAC

__all__ = ["Agent", "PETS", "RandomAgent", "SAC", "action_bounds"]
