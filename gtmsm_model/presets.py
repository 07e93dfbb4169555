"""Named training presets: nested overrides over ``TrainConfig``'s defaults, each written once.

A preset is ``{"world": {...}, "model": {...}, "schedule": {...}, "run": {...}}`` (any part may be
left out); :func:`gtmsm_model.config.make_config` applies it over the defaults, then the caller's
flags over it. ``quick`` states its values explicitly: they are also the dataclasses' defaults
(a test holds the two equal), so changing a default never changes a preset silently.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: a smoke test of every code path, not a trained model.
    "debug": {
        "model": dict(z_dim=8, vae_hidden=32, gate_hidden=8, knn_k=3, gate_open_iters=3),
        "schedule": dict(vae_warmup_iters=10, vae_batch_size=32, iterations=12, batch_size=4, seq_len=40,
                         tau=32, curriculum_start=12, curriculum_iters=6,
                         kl_warmup_iters=5, eval_every=6, eval_sequences=4, eval_tau=32, eval_horizon=16),
        "run": dict(checkpoint_every=5),
    },
    # The default: edge wall model, canvas read-out, a sharp MLP VAE (z 128, width 512, pixel sigma
    # 0.007) with a cheap warm-up on random crops (1200), then 400 iterations on whole sequences:
    # 241-243 CPU seconds on one thread (benchmarks/results/train_gtmsm.md). 2000 + 700 took 443-450
    # for a sharper codec (reference revisited MSE 0.00026 against 0.00037; both 0.75x their floors)
    # and a learned localiser within 3 % of the edge rule everywhere but flat scenes. Warm-up crops
    # and main-phase sequences are augmented (random symmetries / colour maps) so the codec
    # generalises to photos.
    "quick": {
        "world": dict(image_size=32, crop_size=8, step_size=3, start="center", walls="border",
                      wall_density=None),
        "model": dict(z_dim=128, vae_hidden=512, wall_model="edges", gate_hidden=32, ambiguity_margin=1e-5,
                      blocked_prior=0.25, tracker_beam=64, tracker_retry=8, learned_unsure=0.02, loop_closure_threshold=1e-6,
                      edge_radius=0.25, untried_edges="span", refine_steps=10,
                      refine_lr=0.1, novel_view="canvas", canvas_radius=0.0, knn_k=5, pixel_sigma=0.007,
                      state_noise=0.0, gate_open_iters=100),
        "schedule": dict(vae_warmup_iters=1200, vae_batch_size=256, iterations=400, batch_size=16, seq_len=288,
                         tau=256, curriculum_start=24, curriculum_iters=300, kl_start=0.1,
                         kl_warmup_iters=180, lr_vae=2e-3, lr_state=1e-2, grad_clip=10.0, augment_crops=True,
                         augment_sequences=True, eval_every=200, eval_sequences=32, eval_tau=256,
                         eval_horizon=256),
        "run": dict(checkpoint_every=100),
    },
    # The GTM-SM paper's sizes (Fraccaro et al., ICML 2018: z 16, K 5, tau 256, T 288, batch 16),
    # trained longer.
    "paper": {
        "model": dict(z_dim=16, vae_hidden=256, pixel_sigma=0.05, knn_k=5, refine_steps=0),
        "schedule": dict(vae_warmup_iters=1000, iterations=3000, curriculum_iters=1000, kl_warmup_iters=300,
                         eval_every=350, augment_crops=False, augment_sequences=False),
    },
    # A bigger world: 64x64 images, the window moving 4 px (a 15x15 grid of 225 cells), 768 memorised
    # steps (83 % of predicted steps revisit a memorised cell) and 256 predicted; batch 8; the longer schedule.
    "large": {
        "world": dict(image_size=64, step_size=4),
        "schedule": dict(vae_warmup_iters=2000, iterations=700, curriculum_iters=500, kl_warmup_iters=300,
                         tau=768, seq_len=832, eval_tau=768, eval_horizon=256, batch_size=8, eval_sequences=16,
                         eval_every=0),
    },
    # The default's settings with the learned localiser (wall_models.LearnedLocaliser) in place of the
    # pixel-shift rule: q(moved | x_{t-1}, x_t, a_t) trained by the GTM-SM objective alone, on the
    # longer schedule (about twice quick's CPU seconds). Its training gate sharpens until main
    # iteration gate_open_iters + 400 and only then counts the world span, so quick's 400 iterations
    # stop it at three quarters of the way (temperature 0.48, not 0.3) and without a span: it fell behind
    # the default on flat scenes, short memories and the uniform policy (the comparison at 44507ed).
    "learned": {
        "model": dict(wall_model="learned"),
        "schedule": dict(vae_warmup_iters=2000, iterations=700, curriculum_iters=500, kl_warmup_iters=300,
                         eval_every=350),
    },
    # The original formulation's wall model (a learned gate of the absolute state) with its first
    # training recipe: exact with centre starts, wrong with random ones. Kept to compare against.
    "seed-gate": {
        "model": dict(wall_model="absolute", novel_view="knn", z_dim=32, vae_hidden=256, pixel_sigma=0.035,
                      refine_steps=0),
        "schedule": dict(vae_warmup_iters=800, iterations=1100, curriculum_iters=800, kl_warmup_iters=300,
                         eval_every=350, augment_crops=False, augment_sequences=False),
    },
}


def flat_preset(name: str) -> dict[str, Any]:
    """A preset's settings by flat (flag) name, ``{}`` parts merged (for showing defaults in --help)."""
    values: dict[str, Any] = {}
    for part in PRESETS[name].values():
        values.update(part)
    return values
