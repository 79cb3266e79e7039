"""petool: personalized tool learning (PEToolLLM / PEToolBench), reproduced and extended."""

__version__ = "0.1.0"
