"""model.py sources of the Triton model repository; build-repo copies them into place.

They run only inside Triton's python backend stub, and stay thin: the work is done by
`engine/` (and `serving/bls.py` for what the stub needs).
"""
