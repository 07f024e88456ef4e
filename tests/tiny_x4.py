"""Tiny SD-x4-upscaler pipelines (diffusers reference) and their files, for the stage-III tests.

``x4_pipeline`` builds a ``StableDiffusionUpscalePipeline`` from random, perturbed tiny components with
the hub's scheduler settings; ``save_repo`` writes it in the hub folder layout; ``to_ldm_state`` writes
the same weights under the original LDM / OpenCLIP single-file names (an independent, explicit listing
of those names; the tests check it against diffusers' own single-file converters).
"""
from __future__ import annotations

import json

import torch

from tiny_unets import MICRO_X4, diffusers_unet, perturb_

# CLIP BPE vocabulary: "!" is id 0 (OpenCLIP's padding), then the specials, letters, a few merges.
_LETTERS = list("abcdefghijklmnopqrstuvwxyz")
VOCAB = ["!", "<|startoftext|>", "<|endoftext|>", *_LETTERS, *[c + "</w>" for c in _LETTERS],
         "th", "the</w>", "ca", "cat</w>", "do", "dog</w>"]
MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "d o", "do g</w>"]

MICRO_VAE = dict(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                 up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, norm_num_groups=8, latent_channels=4,
                 scaling_factor=0.08333)
# LDM conventions the single file cannot record: 32 GroupNorm groups, 8 UNet heads, 64-wide OpenCLIP heads
LDM_X4 = dict(MICRO_X4, block_out_channels=[32, 32, 64], norm_num_groups=32, attention_head_dim=8,
              cross_attention_dim=64)
LDM_VAE = dict(MICRO_VAE, block_out_channels=(32, 32, 64), norm_num_groups=32)


def write_tokenizer(folder, pad_token: str | None = "!") -> None:
    """vocab.json + merges.txt (+ tokenizer_config.json with 77 tokens and the pad token) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    if pad_token is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "pad_token": pad_token}))


def clip_text_model(hidden: int = 16, layers: int = 2, heads: int = 2, seed: int = 0):
    """A perturbed random transformers CLIPTextModel over :data:`VOCAB` (exact GELU, as OpenCLIP ViT-H)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            hidden_act="gelu", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return perturb_(CLIPTextModel(config), seed)


def x4_pipeline(tmp_path, unet_config: dict = MICRO_X4, vae_config: dict = MICRO_VAE, clip_heads: int = 2):
    """A tiny StableDiffusionUpscalePipeline with the x4 hub scheduler settings (CPU, fp32, eval)."""
    import diffusers
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    vae = perturb_(diffusers.AutoencoderKL(**vae_config), 1)
    sampling = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02,
                                       prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                                       steps_offset=1)
    low_res = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02)
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=clip_text_model(unet_config["cross_attention_dim"], heads=clip_heads),
        tokenizer=CLIPTokenizer.from_pretrained(str(tmp_path / "tok")), unet=diffusers_unet(unet_config),
        low_res_scheduler=low_res, scheduler=sampling, max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def low_res_image(batch: int = 1, size: tuple[int, int] = (16, 16), seed: int = 9, smooth: bool = False):
    """A [-1, 1] test image; ``smooth`` gives low-frequency content (for tiling seam bounds)."""
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.rand(batch, 3, *size, generator=g) * 2 - 1
    coarse = torch.rand(batch, 3, 3, 3, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=True).clamp(-1, 1)


# ---- original single-file names (LDM openaimodel / autoencoder, OpenCLIP) -----------------------------------
_LDM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _resnet(rest: str, table=_LDM_RESNET) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def _ldm_unet_name(key: str, layers: int, attn_levels: set[int]) -> str:
    top = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
           "time_embedding.linear_2.": "time_embed.2.", "class_embedding.": "label_emb.", "conv_norm_out.": "out.0.",
           "conv_out.": "out.2.", "mid_block.attentions.0.": "middle_block.1."}
    for ours, ldm in top.items():
        if key.startswith(ours):
            return ldm + key[len(ours):]
    p = key.split(".")
    if p[0] == "mid_block":
        return f"middle_block.{2 * int(p[2])}." + _resnet(".".join(p[3:]))
    level, part = int(p[1]), p[2]
    if p[0] == "down_blocks":
        first = 1 + level * (layers + 1)
        if part == "downsamplers":
            return f"input_blocks.{first + layers}.0.op." + ".".join(p[5:])
        sub = 0 if part == "resnets" else 1
        rest = ".".join(p[4:])
        return f"input_blocks.{first + int(p[3])}.{sub}." + (_resnet(rest) if sub == 0 else rest)
    first = level * (layers + 1)
    if part == "upsamplers":
        return f"output_blocks.{first + layers}.{2 if level in attn_levels else 1}.conv." + ".".join(p[5:])
    sub = 0 if part == "resnets" else 1
    rest = ".".join(p[4:])
    return f"output_blocks.{first + int(p[3])}.{sub}." + (_resnet(rest) if sub == 0 else rest)


def _ldm_vae_name(key: str, levels: int) -> str:
    vae_resnet = {"conv_shortcut": "nin_shortcut"}
    p = key.split(".")
    if key.startswith("decoder.conv_norm_out."):
        return "decoder.norm_out." + p[-1]
    if key.startswith("decoder.mid_block.resnets."):
        return f"decoder.mid.block_{int(p[3]) + 1}." + _resnet(".".join(p[4:]), vae_resnet)
    if key.startswith("decoder.mid_block.attentions.0."):
        rest = ".".join(p[4:])
        for ours, ldm in {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.",
                          "to_out.0.": "proj_out."}.items():
            if rest.startswith(ours):
                return "decoder.mid.attn_1." + ldm + rest[len(ours):]
    if key.startswith("decoder.up_blocks."):
        block = levels - 1 - int(p[2])
        if p[3] == "upsamplers":
            return f"decoder.up.{block}.upsample.conv." + p[-1]
        return f"decoder.up.{block}.block.{p[4]}." + _resnet(".".join(p[5:]), vae_resnet)
    return key


def _openclip_state(text_model, extra_layer_seed: int = 3) -> dict:
    sd = {k.removeprefix("text_model."): v for k, v in text_model.state_dict().items() if "position_ids" not in k}
    out = {"token_embedding.weight": sd["embeddings.token_embedding.weight"],
           "positional_embedding": sd["embeddings.position_embedding.weight"],
           "ln_final.weight": sd["final_layer_norm.weight"], "ln_final.bias": sd["final_layer_norm.bias"]}
    n = text_model.config.num_hidden_layers
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in range(n):
        layer = f"encoder.layers.{i}."
        for ours, ldm in names.items():
            for kind in ("weight", "bias"):
                out[f"transformer.resblocks.{i}.{ldm}.{kind}"] = sd[f"{layer}{ours}.{kind}"]
        for kind in ("weight", "bias"):
            qkv = [sd[f"{layer}self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(qkv)
    g = torch.Generator().manual_seed(extra_layer_seed)  # the last OpenCLIP layer, unused by SD 2 ("penultimate")
    for name in [k for k in out if k.startswith("transformer.resblocks.0.")]:
        out[name.replace("resblocks.0.", f"resblocks.{n}.")] = torch.randn(out[name].shape, generator=g)
    hidden = text_model.config.hidden_size
    out["text_projection"] = torch.randn(hidden, hidden // 2, generator=g)
    out["logit_scale"] = torch.tensor(4.6)
    return out


def to_ldm_state(pipe, *, with_clip: bool = True) -> dict:
    """The pipeline's UNet, VAE (+ OpenCLIP text tower) under original single-file names, fp32 tensors."""
    c = pipe.unet.config
    layers = c.layers_per_block
    attn_levels = {i for i, t in enumerate(c.up_block_types) if t.startswith("CrossAttn")}
    state = {"model.diffusion_model." + _ldm_unet_name(k, layers, attn_levels): v
             for k, v in pipe.unet.state_dict().items()}
    levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        if k.startswith("decoder.") or "quant_conv" in k or k.startswith("encoder.conv_in."):
            v = v[:, :, None, None] if "mid_block.attentions" in k and k.endswith("weight") and v.dim() == 2 else v
            state["first_stage_model." + _ldm_vae_name(k, levels)] = v
    if with_clip:
        state.update({"cond_stage_model.model." + k: v for k, v in _openclip_state(pipe.text_encoder).items()})
    state["alphas_cumprod"] = pipe.scheduler.alphas_cumprod.clone()  # LDM buffers outside the three models
    return {k: v.detach().contiguous() for k, v in state.items()}
