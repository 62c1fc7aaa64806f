//! Expert streaming under a VRAM budget on the trained MoE fixture (lavapipe): logits are
//! bit-identical to the fully resident run at 100%, 50%, 25% and 12.5% expert budgets,
//! through prefill (matmul_id, in waves when a batch needs more experts than the pool
//! holds), 3-token steps and decode (matvec_id), in every kernel setting, for the F16
//! file and llama.cpp's IQ1_S quant; device allocations never pass the budget; a budget
//! too small for the resident part is refused before anything is uploaded.

mod common;
use common::gpu::{SETTINGS, Setting, backend};
use common::{fixture_path, mixed_steps, prompt_tokens as tokens, stepped_logits, stepped_logits_with};
use lowbit::backend::Backend;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::File;
use lowbit::model::{Model, memory_plan};
use lowbit::stream::StreamOptions;

fn fixture(name: &str) -> File {
    File::open(fixture_path(name)).unwrap()
}

/// Run `name` resident, then at each expert budget with a policy each, and require the
/// same bits, the budget kept, and streaming that really evicted and uploaded.
fn budgets_give_identical_logits(name: &str, settings: &[Setting]) {
    let file = fixture(name);
    let tokens = tokens(40);
    let steps = mixed_steps(tokens.len());
    let plan = memory_plan(&file, tokens.len()).unwrap();
    for &setting in settings {
        let resident = stepped_logits(&mut backend(setting, None), &file, &tokens, &steps);
        for (fraction, policy, prefetch) in common::BUDGET_RUNS {
            let budget = plan.budget_for(fraction);
            let options = StreamOptions {
                vram_budget: Some(budget),
                policy,
                prefetch,
                n_ctx: tokens.len(),
                ..Default::default()
            };
            let mut b = backend(setting, None);
            let logits = stepped_logits_with(&mut b, &file, &options, &tokens, &steps);
            let what = format!("{name} {setting:?} at {fraction} with {policy:?} (prefetch {prefetch})");
            assert!(
                logits.iter().zip(&resident).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: logits differ from the resident run"
            );
            let stats = b.stream_stats().expect("streaming");
            let total = stats.total();
            assert!(stats.peak <= budget, "{what}: peak {} over {budget}", stats.peak);
            assert_eq!(stats.tokens, tokens.len() as u64, "{what}");
            assert_eq!(
                total.uses,
                (tokens.len() * 4 * 5) as u64,
                "{what}: every (token, layer, expert) use counted"
            );
            if fraction < 1.0 {
                assert!(
                    total.hits < total.uses && total.demand_bytes > 0,
                    "{what}: nothing streamed"
                );
                assert!(
                    stats.slot_fraction <= fraction + 0.05,
                    "{what}: {} of experts in slots",
                    stats.slot_fraction
                );
            } else {
                assert_eq!(total.hits, total.uses, "{what}");
            }
            if fraction == 0.125 {
                // 20 slots for 5 layers: the 13-token prefill needs more than a pool's
                // worth of experts in a layer, so it runs in waves.
                assert!(total.waves > (steps.len() * 5) as u64, "{what}: no step took two waves");
            }
            if prefetch {
                assert!(
                    total.predicted > 0 && total.prefetch_bytes > 0 && total.prefetches > 0,
                    "{what}: nothing prefetched"
                );
            }
        }
    }
}

#[test]
fn f16_logits_do_not_depend_on_the_budget() {
    budgets_give_identical_logits("tiny-moe-f16.gguf", &SETTINGS);
}

#[test]
fn iq1_s_logits_do_not_depend_on_the_budget() {
    budgets_give_identical_logits("tiny-moe-IQ1_S.gguf", &SETTINGS[1..3]);
}

#[test]
fn a_budget_too_small_is_refused_before_any_upload() {
    let file = fixture("tiny-moe-f16.gguf");
    let plan = memory_plan(&file, 64).unwrap();
    let setting = SETTINGS[0];
    for budget in [
        plan.resident_bytes() / 2,
        plan.fixed_bytes() + plan.min_pool_bytes() - 1,
    ] {
        let mut b = backend(setting, None);
        let options = StreamOptions {
            vram_budget: Some(budget),
            n_ctx: 64,
            ..Default::default()
        };
        let err = Model::load_with(&file, &mut b, &options, |_, _| {})
            .err()
            .expect("refused");
        let msg = err.to_string();
        for part in [
            "resident",
            "attention",
            "embeddings",
            "KV cache",
            "scratch",
            "expert slots",
        ] {
            assert!(msg.contains(part), "{msg}: no {part}");
        }
        assert_eq!(b.ctx.allocated_bytes(), 0, "uploaded before refusing: {msg}");
    }
    // The smallest budget that fits runs, with one token's experts per pool.
    let budget = plan.fixed_bytes() + plan.min_pool_bytes();
    let options = StreamOptions {
        vram_budget: Some(budget),
        n_ctx: 64,
        ..Default::default()
    };
    let mut b = backend(setting, None);
    let toks = tokens(20);
    let logits = stepped_logits_with(&mut b, &file, &options, &toks, &mixed_steps(20));
    assert_eq!(
        logits,
        stepped_logits(&mut backend(setting, None), &file, &toks, &mixed_steps(20))
    );
    assert!(b.ctx.peak_bytes() <= budget);
    // The CPU backend has no VRAM to budget.
    let err = Model::load_with(&file, &mut CpuBackend::default(), &options, |_, _| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("--vram-budget needs the GPU"), "{err}");
}

#[test]
fn allocations_past_the_budget_fail_and_leave_the_count() {
    let mut b = backend(SETTINGS[0], None);
    let before = b.ctx.allocated_bytes();
    b.ctx.set_vram_budget(Some(before + (1 << 20)));
    let usage = wgpu::BufferUsages::STORAGE;
    let kept = b.ctx.alloc("fits", 1 << 19, usage).unwrap();
    let err = b.ctx.alloc("too big", 1 << 20, usage).err().unwrap();
    assert!(err.to_string().contains("VRAM budget"), "{err}");
    assert_eq!(b.ctx.allocated_bytes(), before + (1 << 19));
    assert!(b.ctx.peak_bytes() <= before + (1 << 20));
    drop(kept);
    assert_eq!(b.ctx.allocated_bytes(), before);
}
