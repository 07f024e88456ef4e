"""The cascade's UNets (IF-I-XL/L/M, IF-II-L/M, the SD x4 upscaler) as one plain ``nn.Module`` built from
:class:`UNetConfig`; each level is built from the block-type registry in :mod:`.config`.

Call contract: ``unet(x, t, text_embeds, noise_level=None)`` returns what diffusers'
``UNet2DConditionModel(x, t, encoder_hidden_states=text_embeds, class_labels=noise_level).sample``
returns. Parameter names equal diffusers' state-dict keys, so checkpoints load without renaming.
Activations run in ``torch.channels_last`` memory format end to end.
"""
from __future__ import annotations

import torch
from torch import nn

from .ops import DEFAULT_OPS

from .blocks import DownBlock, LevelAttention, LevelOptions, MidBlock, UpBlock
from .checks import check_unet_inputs
from .config import DOWN_BLOCKS, MID_BLOCKS, UP_BLOCKS, UNetConfig
from .embeddings import TextPoolEmbedding, TimestepMLP, activation, sinusoidal_embedding
from .text_context import TextContext, text_context_for


class UNet(nn.Module):
    """Diffusion UNet with text cross-attention (IF: pixel space, T5, learned variance; x4: latents, CLIP).

    x: [B, in_channels, H, W] (SR models: noisy image / latent and the low-res image concatenated),
    t: [B] or scalar timesteps, text_embeds: [B, L, text_dim] raw T5 states or CLIP states (any L),
    noise_level: [B] integer noise-augmentation levels (SR models only) -> [B, out_channels, H, W].
    """

    # what the first out_channels (of 2x with learned variance) predict: "epsilon" (IF) or "v_prediction"; a
    # property of the training, not of the architecture: load_unet reads it from the repo's scheduler config
    prediction_type: str = "epsilon"
    # the dtype activations run in when the weights are stored in fp8 (load_unet(weight_dtype=float8_e4m3fn) sets
    # it; the layers are then casting ops); otherwise activations run in the weights' dtype
    compute_dtype: torch.dtype = torch.bfloat16

    def __init__(self, config: UNetConfig, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, operations=DEFAULT_OPS):
        super().__init__()
        self.config = c = config
        ops, factory = operations, {"dtype": dtype, "device": device}
        ch0, emb_dim = c.block_out_channels[0], c.time_embed_dim
        self.conv_in = ops.Conv2d(c.in_channels, ch0, 3, padding=1, **factory)
        self.time_embedding = TimestepMLP(ch0, emb_dim, c.act_fn, ops, **factory)
        if c.class_embed_type == "timestep":
            self.class_embedding = TimestepMLP(ch0, emb_dim, c.act_fn, ops, **factory)
        elif c.num_class_embeds is not None:
            self.class_embedding = ops.Embedding(c.num_class_embeds, emb_dim, **factory)
        if c.encoder_hid_dim_type == "text_proj":
            self.encoder_hid_proj = ops.Linear(c.encoder_hid_dim, c.cross_attention_dim, **factory)
        if c.addition_embed_type == "text":
            self.add_embedding = TextPoolEmbedding(c.text_dim, emb_dim, c.addition_embed_type_num_heads, ops, **factory)
        self.time_embed_act = activation(c.time_embedding_act_fn) if c.time_embedding_act_fn else None
        opts = LevelOptions(emb_dim, c.cross_attention_dim, c.norm_num_groups, c.norm_eps, c.act_fn,
                            c.resnet_time_scale_shift == "scale_shift", c.resnet_skip_time_act,
                            c.cross_attention_norm == "group_norm", c.use_linear_projection, c.upcast_attention)
        self.down_blocks, skip_channels = self._build_down(opts, ops, factory)
        mid_kind = MID_BLOCKS[c.mid_block_type]
        # diffusers' UNetMidBlock2DCrossAttn has no only-cross option; the simple mid block follows the config
        mid_level = LevelAttention(c.attention_head_dim[-1], mid_kind == "simple" and c.mid_block_only_cross_attention,
                                   c.transformer_layers_per_block[-1])
        self.mid_block = MidBlock(c.block_out_channels[-1], opts, kind=mid_kind, level=mid_level,
                                  scale=c.mid_block_scale_factor, ops=ops, factory=factory)
        self.up_blocks = self._build_up(opts, skip_channels, ops, factory)
        self.conv_norm_out = ops.GroupNorm(c.norm_num_groups, ch0, eps=c.norm_eps, **factory)
        self.conv_act = activation(c.act_fn)
        self.conv_out = ops.Conv2d(ch0, c.out_channels, 3, padding=1, **factory)
        self.to(memory_format=torch.channels_last)

    def _level(self, i: int, kind) -> tuple[LevelAttention, float]:
        """Attention settings and resnet output scale of down level ``i`` (up blocks pass the mirrored index)."""
        c = self.config
        level = LevelAttention(c.attention_head_dim[i], c.only_cross_attention[i], c.transformer_layers_per_block[i])
        return level, (c.resnet_out_scale_factor if kind.resample == "resnet" else 1.0)

    def _build_down(self, opts: LevelOptions, ops, factory: dict) -> tuple[nn.ModuleList, list[int]]:
        c, blocks = self.config, nn.ModuleList()
        skip_channels, in_ch = [c.block_out_channels[0]], c.block_out_channels[0]
        for i, (name, out_ch) in enumerate(zip(c.down_block_types, c.block_out_channels)):
            last = i == len(c.block_out_channels) - 1
            n, kind = c.layers_per_block[i], DOWN_BLOCKS[name]
            level, scale = self._level(i, kind)
            blocks.append(DownBlock(in_ch, out_ch, n, opts, kind=kind, level=level, downsample=not last,
                                    scale=scale, ops=ops, factory=factory))
            skip_channels += [out_ch] * (n + (0 if last else 1))
            in_ch = out_ch
        return blocks, skip_channels

    def _build_up(self, opts: LevelOptions, skip_channels: list[int], ops, factory: dict) -> nn.ModuleList:
        c, blocks = self.config, nn.ModuleList()
        prev_ch, skips, depth = c.block_out_channels[-1], list(skip_channels), len(c.block_out_channels)
        for i, name in enumerate(c.up_block_types):
            mirror, kind = depth - 1 - i, UP_BLOCKS[name]
            out_ch = c.block_out_channels[mirror]
            consumed = [skips.pop() for _ in range(c.layers_per_block[mirror] + 1)]
            level, scale = self._level(mirror, kind)
            blocks.append(UpBlock(prev_ch, out_ch, consumed, opts, kind=kind, level=level, upsample=i < depth - 1,
                                  scale=scale, ops=ops, factory=factory))
            prev_ch = out_ch
        return blocks

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (inputs and text embeddings are cast to it): the weights' own, or for fp8 weights
        ``compute_dtype``."""
        stored = self.conv_in.weight.dtype
        return self.compute_dtype if stored.itemsize == 1 else stored

    @property
    def device(self) -> torch.device:
        """Where the first layer's weight is; under a memory manager that streams weights, ask the manager."""
        return self.conv_in.weight.device

    def text_context(self, text_embeds: torch.Tensor) -> TextContext:
        """The text's share of a forward pass, independent of t and x: states [B, L, text_dim] -> a context with
        the projected states [B, L, cross_attention_dim], the pooled embedding and (lazily) each layer's k/v."""
        text = text_embeds.to(self.dtype)
        ctx = self.encoder_hid_proj(text) if hasattr(self, "encoder_hid_proj") else text
        return TextContext(ctx, self.add_embedding(text) if self.config.addition_embed_type == "text" else None)

    def _embedding(self, t: torch.Tensor, pooled_text: torch.Tensor | None,
                   noise_level: torch.Tensor | None) -> torch.Tensor:
        """Global conditioning vector [B, time_embed_dim]: time (+ noise level) (+ pooled text), then act."""
        c = self.config
        sinus = lambda v: sinusoidal_embedding(v, c.block_out_channels[0], flip_sin_to_cos=c.flip_sin_to_cos,  # noqa: E731
                                               freq_shift=c.freq_shift).to(self.dtype)
        emb = self.time_embedding(sinus(t))
        if c.class_embed_type == "timestep":
            emb = emb + self.class_embedding(sinus(noise_level))
        elif c.num_class_embeds is not None:
            emb = emb + self.class_embedding(noise_level.long())
        if pooled_text is not None:
            emb = emb + pooled_text
        return emb if self.time_embed_act is None else self.time_embed_act(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, text_embeds: torch.Tensor,
                noise_level: torch.Tensor | None = None) -> torch.Tensor:
        t, noise_level = check_unet_inputs(self.config, x, t, text_embeds, noise_level)
        ctx = text_context_for(self, text_embeds, self.text_context)  # reused across a sampling loop's steps
        emb = self._embedding(t, ctx.pooled, noise_level)
        h = self.conv_in(x.to(self.dtype).contiguous(memory_format=torch.channels_last))
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, emb, ctx)
            skips += block_skips
        h = self.mid_block(h, emb, ctx)
        odd = any(d % 2 ** (len(self.up_blocks) - 1) for d in x.shape[-2:])  # diffusers' forward_upsample_size
        for block in self.up_blocks:
            h = block(h, skips, emb, ctx, match_skip_size=odd)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))
