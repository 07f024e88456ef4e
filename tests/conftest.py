import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from _comfy_host import comfyui_tree, tree_version, version_mismatch  # noqa: E402


def pytest_sessionstart(session):
    """Say which ComfyUI host this session tests (``scripts/test.sh`` runs two), also under ``-q``."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        tree = comfyui_tree()
        reporter.write_line(f"ComfyUI host: {tree_version(tree) or 'not installed'} at {tree} "
                            f"(python {sys.executable})")


def pytest_configure(config):
    problem = version_mismatch(tree_version(comfyui_tree()), f"the tree {comfyui_tree()}")
    if problem:
        raise pytest.UsageError(problem)


@pytest.fixture(scope="session")
def x4_repo(tmp_path_factory):
    """(diffusers StableDiffusionUpscalePipeline, its saved hub-layout folder): tiny random x4 upscaler."""
    pytest.importorskip("diffusers")
    from tiny_x4 import x4_pipeline

    root = tmp_path_factory.mktemp("x4")
    pipe = x4_pipeline(root)
    pipe.save_pretrained(root / "repo")
    return pipe, root / "repo"


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread (the tiny vision models are slower with two on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base():
    """A random micro IF-I (base) UNet."""
    from cascade_core.unet.config import UNetConfig
    from cascade_core.unet.model import UNet
    from tiny_unets import MICRO_IF_I

    torch.manual_seed(0)
    return UNet(UNetConfig.from_diffusers_config(MICRO_IF_I)).eval()


@pytest.fixture(scope="module")
def sr():
    """A random micro IF-II (super-resolution) UNet."""
    from cascade_core.unet.config import UNetConfig
    from cascade_core.unet.model import UNet
    from tiny_unets import MICRO_IF_II

    torch.manual_seed(0)
    return UNet(UNetConfig.from_diffusers_config(MICRO_IF_II)).eval()
