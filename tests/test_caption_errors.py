"""Wrong, incomplete or foreign model folders and odd images get clear ValueErrors from both loaders."""
import json
import shutil

import pytest
import torch
from _vision_models import GIT_PREPROCESSOR, make_images, save_clip, save_git

from cascade_core import WeightFileError
from cascade_core.captioning import load_captioner
from cascade_core.hf_folder import ModelFolderError, WrongModelError
from cascade_core.image import ImageInputError
from cascade_core.similarity import load_embedder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return root, save_git(root / "git-base-coco"), save_clip(root / "clip-vit-base-patch32")


def copy(folders, name: str, source: int = 1):
    root = folders[0]
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    return shutil.copytree(folders[source], target)


def test_missing_processor_files_are_listed(folders):
    folder = copy(folders, "no-preprocessor")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ModelFolderError, match=r"lacks the processor files .*preprocessor_config\.json \(or "
                                               r"processor_config\.json.*Download them from the same model"):
        load_captioner(folder)
    (folder / "vocab.txt").unlink()
    with pytest.raises(ModelFolderError, match=r"preprocessor_config\.json.*tokenizer: tokenizer\.json or vocab\.txt"):
        load_captioner(folder)
    clip = copy(folders, "clip-no-merges", source=2)
    (clip / "merges.txt").unlink()
    with pytest.raises(ModelFolderError, match=r"tokenizer: tokenizer\.json or vocab\.json \+ merges\.txt"):
        load_embedder(clip)


def test_nested_processor_config_is_accepted(folders):
    folder = copy(folders, "nested")
    (folder / "preprocessor_config.json").unlink()
    (folder / "processor_config.json").write_text(json.dumps({"image_processor": GIT_PREPROCESSOR}))
    images = make_images(2, 32, 32, seed=31)
    assert load_captioner(folder).caption(images, max_new_tokens=5) == load_captioner(folders[1]).caption(
        images, max_new_tokens=5)


def test_wrong_model_types(folders):
    _, git, clip = folders
    with pytest.raises(WrongModelError, match=r"holds a model_type 'clip' \(CLIPModel\) model, but the GIT captioner "
                                              r"needs a GIT captioning model \(GitForCausalLM"):
        load_captioner(clip)
    with pytest.raises(WrongModelError, match=r"model_type 'git' \(GitForCausalLM\).*needs CLIP .*"
                                              r"\[model_type 'clip'\] or SigLIP"):
        load_embedder(git)
    video = copy(folders, "git-base-vatex")
    config = json.loads((video / "config.json").read_text())
    (video / "config.json").write_text(json.dumps({**config, "num_image_with_embedding": 6}))
    with pytest.raises(WrongModelError, match="video GIT model"):
        load_captioner(video)


def test_missing_or_unusable_paths(folders):
    root, git, _ = folders
    with pytest.raises(ModelFolderError, match="not found"):
        load_captioner(root / "nothing")
    with pytest.raises(ModelFolderError, match="is a file; the GIT captioner needs a transformers model folder"):
        load_captioner(git / "model.safetensors")
    (root / "empty").mkdir(exist_ok=True)
    with pytest.raises(ModelFolderError, match="no config.json: not a transformers model folder"):
        load_embedder(root / "empty")
    broken = copy(folders, "broken-config")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="cannot read"):
        load_captioner(broken)


def test_pickles_and_mismatched_weights(folders):
    pickles = copy(folders, "pickle-only")
    (pickles / "model.safetensors").rename(pickles / "pytorch_model.bin")
    with pytest.raises(WeightFileError, match=r"found only pickle files \['pytorch_model.bin'\].*safetensors only"):
        load_captioner(pickles)
    deeper = copy(folders, "more-layers")
    config = json.loads((deeper / "config.json").read_text())
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ModelFolderError, match=r"do not fit its config.json .*missing keys .*layer\.2\."):
        load_captioner(deeper)
    wider = copy(folders, "wider")
    (wider / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(ModelFolderError, match=r"mismatched keys .*dense.bias: file \[48\], config \[64\]"):
        load_captioner(wider)


def test_odd_images(folders):
    captioner = load_captioner(folders[1])
    with pytest.raises(ImageInputError, match="empty"):
        captioner.caption(torch.zeros(0, 32, 32, 3))
    with pytest.raises(ImageInputError, match="channels"):
        captioner.caption(torch.zeros(1, 32, 32, 2))
    gray = make_images(2, 32, 32, channels=1, seed=32)
    assert captioner.caption(gray, max_new_tokens=6) == captioner.caption(gray.expand(-1, -1, -1, 3), max_new_tokens=6)
    rgba = make_images(2, 32, 32, channels=4, seed=33)
    on_white = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
    assert captioner.caption(rgba, max_new_tokens=6) == captioner.caption(on_white, max_new_tokens=6)
