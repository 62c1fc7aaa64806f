//! Routed experts through the host cache under a RAM budget, on the trained MoE fixture:
//! CPU logits (reference and fast backends) are bit-identical to the unbudgeted run at 100%, 50%, 25% and 12.5% of
//! the expert bytes, through prefill (in waves), 3-token steps and decode, with and
//! without prefetch, reading around the page cache and through it; on lavapipe, in every kernel setting, a RAM budget alone and one
//! stacked behind a VRAM budget (disk, host cache, VRAM slots) give the unbudgeted GPU
//! run's bits; the cache stays within its share of the budget; a budget too small
//! for the resident part is refused with the numbers; a file that shrinks under a
//! running model gives a read error that names the file and the tensor.

mod common;
use common::gpu::{SETTINGS, backend};
use common::{fixture_path, mixed_steps, prompt_tokens as tokens, stepped_logits, stepped_logits_with};
use lowbit::backend::Backend;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::File;
use lowbit::model::{Model, memory_plan};
use lowbit::stream::{PolicyKind, StreamOptions};

fn options(ram_budget: u64, policy: PolicyKind, prefetch: bool, n_ctx: usize) -> StreamOptions {
    StreamOptions {
        ram_budget: Some(ram_budget),
        policy,
        prefetch,
        n_ctx,
        ..Default::default()
    }
}

fn cpu_budgets_give_identical_logits(name: &str, backend: impl Fn() -> CpuBackend) {
    let file = File::open(fixture_path(name)).unwrap();
    let tokens = tokens(40);
    let steps = mixed_steps(tokens.len());
    let plan = memory_plan(&file, tokens.len()).unwrap();
    let resident = stepped_logits(&mut backend(), &file, &tokens, &steps);
    for (i, (fraction, policy, prefetch)) in common::BUDGET_RUNS.into_iter().enumerate() {
        let budget = plan.ram_budget_for(fraction);
        let mut cpu = backend();
        // Direct reads (the default) and reads through the page cache, in turn.
        let page_cache = i % 2 == 1;
        let o = StreamOptions {
            page_cache,
            ..options(budget, policy, prefetch, tokens.len())
        };
        let got = stepped_logits_with(&mut cpu, &file, &o, &tokens, &steps);
        let what = format!(
            "{} {name} at {fraction} with {policy:?} (prefetch {prefetch}, page cache {page_cache})",
            cpu.name()
        );
        assert!(got == resident, "{what}: logits differ from the unbudgeted run");
        let stats = cpu.stream_stats().expect("experts stream under a RAM budget");
        let total = stats.total();
        assert!(
            stats.peak <= budget - plan.host_fixed_bytes(),
            "{what}: a cache of {} bytes passes the budget's share",
            stats.peak
        );
        assert!(total.uses > 0, "{what}: no expert use counted");
        if fraction < 1.0 {
            assert!(
                total.hits < total.uses && total.demand_bytes > 0,
                "{what}: nothing streamed"
            );
        }
        if prefetch {
            assert!(
                total.prefetch_bytes > 0 && total.prefetches > 0,
                "{what}: nothing prefetched"
            );
        }
    }
}

#[test]
fn f16_cpu_logits_do_not_depend_on_the_ram_budget() {
    cpu_budgets_give_identical_logits("tiny-moe-f16.gguf", CpuBackend::default);
}

#[test]
fn iq1_s_cpu_logits_do_not_depend_on_the_ram_budget() {
    cpu_budgets_give_identical_logits("tiny-moe-IQ1_S.gguf", CpuBackend::default);
}

#[test]
fn fast_cpu_logits_do_not_depend_on_the_ram_budget() {
    for name in ["tiny-moe-f16.gguf", "tiny-moe-IQ1_S.gguf"] {
        cpu_budgets_give_identical_logits(name, || CpuBackend::fast(2).unwrap());
    }
}

#[test]
fn gpu_logits_do_not_depend_on_a_ram_budget_alone_or_behind_a_vram_budget() {
    let file = File::open(fixture_path("tiny-moe-f16.gguf")).unwrap();
    let tokens = tokens(40);
    let steps = mixed_steps(tokens.len());
    let plan = memory_plan(&file, tokens.len()).unwrap();
    for setting in SETTINGS {
        let resident = stepped_logits(&mut backend(setting, None), &file, &tokens, &steps);
        let ram = plan.experts_share(0.25);
        let runs = [(None, plan.ram_budget_for(0.25)), (Some(plan.budget_for(0.5)), ram)];
        for (vram, ram) in runs {
            let mut g = backend(setting, None);
            let o = StreamOptions {
                vram_budget: vram,
                ..options(ram, PolicyKind::Reuse, vram.is_some(), tokens.len())
            };
            let got = stepped_logits_with(&mut g, &file, &o, &tokens, &steps);
            let what = format!("{setting:?} with VRAM {vram:?} and RAM {ram}");
            assert!(got == resident, "{what}: logits differ from the unbudgeted run");
            if vram.is_some() {
                let host = g.host_stats().expect("a host cache behind the VRAM slots");
                let total = host.total();
                assert!(host.peak <= ram && total.uses > 0, "{what}: {host:?}");
                assert!(
                    total.demand_bytes > 0 && total.hits < total.uses,
                    "{what}: the host cache never missed"
                );
            }
        }
    }
}

#[test]
fn a_ram_budget_too_small_for_the_resident_part_is_refused_with_the_numbers() {
    let file = File::open(fixture_path("tiny-moe-f16.gguf")).unwrap();
    let plan = memory_plan(&file, 16).unwrap();
    let o = options(plan.host_fixed_bytes(), PolicyKind::Reuse, false, 16);
    let err = Model::load_with(&file, &mut CpuBackend::default(), &o, |_, _| {})
        .err()
        .expect("a budget without room for one token's experts")
        .to_string();
    for part in ["RAM budget", "resident", "embeddings", "KV cache", "expert slots"] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
}

#[test]
fn a_file_that_shrinks_under_a_running_model_gives_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-moe.gguf");
    std::fs::copy(fixture_path("tiny-moe-f16.gguf"), &path).unwrap();
    let file = File::open(&path).unwrap();
    let tokens = tokens(24);
    let plan = memory_plan(&file, tokens.len()).unwrap();
    let mut cpu = CpuBackend::default();
    let o = options(plan.ram_budget_for(0.125), PolicyKind::Reuse, false, tokens.len());
    let model = Model::load_with(&file, &mut cpu, &o, |_, _| {}).unwrap();
    let mut session = model.session(&mut cpu, tokens.len()).unwrap();
    model.forward(&mut cpu, &mut session, &tokens[..4], true).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = tokens[4..]
        .iter()
        .find_map(|t| model.forward(&mut cpu, &mut session, &[*t], true).err())
        .expect("reading experts past the new end of the file")
        .to_string();
    assert!(err.contains("tiny-moe.gguf") && err.contains("_exps"), "{err}");
}
