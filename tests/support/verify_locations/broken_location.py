"""A code location that fails to load, as dagma.definitions does on a misspelled switch."""

from dagma.settings import load_settings

load_settings({"MLFLOW_USE_TRACKING": "maybe"})  # raises SettingsError while loading
