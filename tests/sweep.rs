//! `lowbit bench stream`'s sweep on the trained MoE fixture: under RAM budgets on the
//! CPU (the model's greedy continuation, no text) and under a VRAM budget on lavapipe
//! (a text, teacher-forced). Belady's optimum, computed offline over the unbudgeted
//! run's routes with the same slot counts, is never beaten by an online policy
//! without prefetch; the counters agree with each other; the disk rate is measured.

mod common;
use common::fixture_path;
use lowbit::stream::sweep::{Budgets, Input, Row, Sweep, SweepOptions, sweep};

/// The rows of one budget, by policy.
fn by_policy<'a>(rows: &'a [Row], budget_bytes: u64, policy: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.budget_bytes == budget_bytes && r.policy == policy)
        .unwrap_or_else(|| panic!("no {policy} row at {budget_bytes}"))
}

fn check(result: &Sweep, budgets: usize) {
    let rows = &result.rows;
    assert_eq!(rows.len(), 1 + 4 * budgets, "{rows:?}");
    assert_eq!(rows[0].policy, "resident");
    let mut seen: Vec<u64> = rows[1..].iter().map(|r| r.budget_bytes).collect();
    seen.dedup();
    assert_eq!(seen.len(), budgets, "{rows:?}");
    for &b in &seen {
        let belady = by_policy(rows, b, "belady");
        for policy in ["lru", "reuse", "reuse+prefetch"] {
            let r = by_policy(rows, b, policy);
            assert!(r.tok_s.is_some_and(|t| t > 0.0) && r.stall_per_token.is_some(), "{r:?}");
            assert!(r.demand_bytes_per_token <= r.bytes_per_token, "{r:?}");
            assert_eq!(r.budget, belady.budget, "{r:?}");
            if policy != "reuse+prefetch" {
                assert!(r.hit_rate <= belady.hit_rate + 1e-12, "{r:?} beats {belady:?}");
                assert!(
                    r.demand_bytes_per_token >= belady.demand_bytes_per_token - 1e-6,
                    "{r:?}"
                );
            }
        }
        assert!(
            belady.hit_rate < 1.0 && belady.budget < 1.0,
            "{belady:?}: nothing streamed"
        );
    }
}

#[test]
fn ram_budgets_on_the_cpu_decode_the_greedy_continuation() {
    let model = fixture_path("tiny-moe-Q8_0.gguf");
    let file = lowbit::gguf::File::open(&model).unwrap();
    let plan = lowbit::model::memory_plan(&file, 12).unwrap();
    let budgets = vec![plan.ram_budget_for(0.5), plan.ram_budget_for(0.25)];
    let options = SweepOptions {
        input: Input::Greedy,
        budgets: Budgets::Ram(budgets.clone()),
        n_tokens: 12,
        warmup: 2,
        page_cache: false,
    };
    let result = sweep(&model, &options, || Ok(lowbit::cpu::CpuBackend::default()), |_| {}).unwrap();
    check(&result, 2);
    for b in budgets {
        assert!(
            result.rows.iter().any(|r| r.budget_bytes == b),
            "no rows at the budget {b}"
        );
    }
    let disk = result.disk.expect("the disk rate is measured under a RAM budget");
    assert!(disk.best().is_some_and(|r| r > 0.0) && disk.bytes > 0, "{disk:?}");
}

#[test]
fn a_vram_budget_on_lavapipe_teacher_forces_a_text() {
    let model = fixture_path("tiny-moe-IQ1_S.gguf");
    let text = fixture_path("persuasion.txt");
    let options = SweepOptions {
        input: Input::Text(&text),
        budgets: Budgets::Vram(vec![0.25]),
        n_tokens: 10,
        warmup: 2,
        page_cache: false,
    };
    let gpu = lowbit::gpu::GpuOptions::from_env().unwrap();
    let result = sweep(&model, &options, || lowbit::gpu::GpuBackend::new(gpu.clone()), |_| {}).unwrap();
    check(&result, 1);
    assert!(result.disk.is_none());
}

#[test]
fn too_few_tokens_for_the_warmup_are_refused() {
    let model = fixture_path("tiny-moe-Q8_0.gguf");
    let options = SweepOptions {
        input: Input::Greedy,
        budgets: Budgets::Ram(vec![1 << 30]),
        n_tokens: 4,
        warmup: 4,
        page_cache: false,
    };
    let err = sweep(&model, &options, || Ok(lowbit::cpu::CpuBackend::default()), |_| {}).expect_err("refused");
    assert!(err.to_string().contains("--warmup 4"), "{err}");
}
