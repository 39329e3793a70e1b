"""Past one machine: a model split over boxes (llama.cpp RPC) and many users (Ray Serve)."""
