"""The config room: the schemas (the one declaration of every option), the pre-flight that checks every job
before Hydra runs, the validation into typed objects, the config hash, and sweep folder names."""
