"""The parity room: what an output is held to (tolerance, fitted fp32 bound), the verification inputs and the
gate's arithmetic, and the runtimes artifacts are run in. ``tolerance`` is torch-free (deploy_check)."""
