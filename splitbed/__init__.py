"""splitbed: a testbed for AI/ML split inference over emulated 5G links."""

__version__ = "0.1.0"
