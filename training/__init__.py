"""CycleGAN training for faceage-video: G (young→old) and F (old→young)."""
