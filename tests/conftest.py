import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def x4_repo(tmp_path_factory):
    """(diffusers StableDiffusionUpscalePipeline, its saved hub-layout folder): tiny random x4 upscaler."""
    pytest.importorskip("diffusers")
    from tiny_x4 import x4_pipeline

    root = tmp_path_factory.mktemp("x4")
    pipe = x4_pipeline(root)
    pipe.save_pretrained(root / "repo")
    return pipe, root / "repo"
