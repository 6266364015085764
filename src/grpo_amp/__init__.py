"""grpo-amp: does GRPO amplify the probability of success the way the theory says?"""

__version__ = "0.1.0"
