"""mlplatform: a reference ML platform library. All logic lives here; components are thin."""

__version__ = "0.1.0"
