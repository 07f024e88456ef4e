"""Stage III: the Stable Diffusion x4 upscaler (256 -> 1024) with its VAE decoder and CLIP text encoder."""
