//! Quantization against llama.cpp: lowbit re-quantizing the F16 fixture with the types of
//! each llama-quantize-made fixture (and the same imatrix) reproduces its bytes; recipes,
//! presets and fallbacks; imatrix files and collection; the bit-budget solver; output
//! files that follow the GGUF rules llama.cpp relies on; atomic writes.

use lowbit::backend::Backend;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::{File, Value};
use lowbit::model::Model;
use lowbit::quant::BlockType;
use lowbit::quantize::budget::{Sensitivity, allocate, parse_size};
use lowbit::quantize::collect::Collect;
use lowbit::quantize::{Imatrix, Recipe, TensorClass, plan, quantize_file, quantize_values};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

fn f16() -> File {
    File::open(fixtures().join("tiny-moe-f16.gguf")).unwrap()
}

/// A recipe that gives every tensor of `reference` its type there.
fn recipe_of(reference: &File) -> Recipe {
    let text: String = reference
        .tensors()
        .filter(|t| t.info.ty != BlockType::F32)
        .map(|t| format!("^{}$ = {}\n", regex::escape(&t.info.name), t.info.ty.name()))
        .collect();
    Recipe::parse(&text).unwrap()
}

/// (identical tensors, compared tensors, differing blocks, compared blocks).
fn compare_with_llama_cpp(name: &str, with_imatrix: bool) -> (usize, usize, usize, usize) {
    let reference = File::open(fixtures().join(format!("tiny-moe-{name}.gguf"))).unwrap();
    let imatrix = with_imatrix.then(|| Imatrix::read(&fixtures().join("imatrix.gguf")).unwrap());
    let source = f16();
    let planned = plan(&source, &recipe_of(&reference));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    quantize_file(&source, &planned, &out, imatrix.as_ref(), |_, _| {}).unwrap();
    let mine = File::open(&out).unwrap();
    let (mut same, mut compared, mut blocks_diff, mut blocks) = (0, 0, 0, 0);
    for t in mine.tensors() {
        let r = reference.tensor(&t.info.name).unwrap();
        if r.info.ty != t.info.ty {
            continue;
        }
        compared += 1;
        same += (t.bytes == r.bytes) as usize;
        let bs = t.info.ty.type_size();
        for (a, b) in t.bytes.chunks(bs).zip(r.bytes.chunks(bs)) {
            blocks += 1;
            blocks_diff += (a != b) as usize;
        }
    }
    (same, compared, blocks_diff, blocks)
}

#[test]
fn llama_quantize_outputs_are_reproduced_byte_for_byte() {
    for (name, imatrix) in [
        ("Q8_0", false),
        ("Q4_K_M", false),
        ("Q2_K", false),
        ("TQ1_0", false),
        ("IQ1_S", true),
        ("IQ2_XXS", true),
    ] {
        let (same, compared, _, _) = compare_with_llama_cpp(name, imatrix);
        assert_eq!(compared, 106, "{name}: every tensor has its llama.cpp type");
        assert_eq!(same, compared, "{name}: {same} of {compared} tensors identical");
    }
}

#[test]
fn iq1_m_matches_llama_quantize_but_for_near_ties() {
    // IQ1_M's search compares float sums; llama.cpp's build rounds a few differently.
    let (_, compared, diff, blocks) = compare_with_llama_cpp("IQ1_M", true);
    assert_eq!(compared, 106);
    assert!(diff * 1000 <= blocks, "{diff} of {blocks} blocks differ");
}

#[test]
fn recipes_parse_match_in_order_and_fall_back() {
    let r = Recipe::parse(
        "# comment\nffn_down_exps @ moe 0..2 = IQ2_XXS\n_exps = IQ1_S\nattn_.* @ layers 1..3 = Q6_K\nattn_ = Q4_K\n",
    )
    .unwrap();
    // Layer 1 is the fixture's first MoE layer.
    assert_eq!(
        r.type_for("blk.1.ffn_down_exps.weight", Some(1)),
        Some(BlockType::IQ2_XXS)
    );
    assert_eq!(
        r.type_for("blk.2.ffn_down_exps.weight", Some(1)),
        Some(BlockType::IQ2_XXS)
    );
    assert_eq!(
        r.type_for("blk.3.ffn_down_exps.weight", Some(1)),
        Some(BlockType::IQ1_S)
    );
    assert_eq!(r.type_for("blk.2.attn_q_a.weight", Some(1)), Some(BlockType::Q6_K));
    assert_eq!(r.type_for("blk.4.attn_q_a.weight", Some(1)), Some(BlockType::Q4_K));
    assert_eq!(r.type_for("token_embd.weight", Some(1)), None);
    assert_eq!(
        Recipe::parse(&r.to_text()).unwrap().to_text(),
        r.to_text(),
        "text round trip"
    );
    for bad in ["x = Q9_K", "x @ layers 3..1 = Q4_K", "( = Q4_K", "x = I32", "no type"] {
        assert!(Recipe::parse(bad).is_err(), "{bad}");
    }
    assert!(Recipe::load("no-such-preset-or-file").is_err());

    let planned = plan(&f16(), &Recipe::preset("ud-iq1_s").unwrap().unwrap());
    let get = |n: &str| planned.iter().find(|p| p.name == n).unwrap();
    assert_eq!(get("blk.1.ffn_down_exps.weight").ty, BlockType::IQ2_XXS);
    assert_eq!(get("blk.4.ffn_down_exps.weight").ty, BlockType::IQ1_S);
    assert_eq!(get("blk.4.ffn_up_exps.weight").ty, BlockType::IQ1_S);
    assert_eq!(get("token_embd.weight").ty, BlockType::Q4_K);
    assert_eq!(get("output.weight").ty, BlockType::Q6_K);
    assert_eq!(get("blk.0.ffn_down.weight").ty, BlockType::Q6_K);
    assert_eq!(get("blk.2.ffn_gate_shexp.weight").ty, BlockType::Q4_K);
    for kept in [
        "blk.2.ffn_gate_inp.weight",
        "blk.2.exp_probs_b.bias",
        "blk.2.attn_norm.weight",
    ] {
        assert_eq!(get(kept).ty, BlockType::F32, "{kept}");
    }
    // Rows of 128 cannot hold Q4_K's 256-element blocks: Q5_0, with the reason noted.
    let q_b = get("blk.2.attn_q_b.weight");
    assert_eq!(q_b.ty, BlockType::Q5_0);
    assert!(q_b.note.as_deref().unwrap().contains("q5_0"));
    let uniform = plan(&f16(), &Recipe::preset("uniform-tq1_0").unwrap().unwrap());
    assert!(
        uniform
            .iter()
            .filter(|p| p.quantizable() && p.k() % 256 == 0)
            .all(|p| p.ty == BlockType::TQ1_0)
    );
    assert_eq!(TensorClass::of("blk.3.ffn_up_shexp.weight"), TensorClass::SharedExpert);
}

#[test]
fn imatrix_files_round_trip_in_both_formats() {
    let im = Imatrix::read(&fixtures().join("imatrix.gguf")).unwrap();
    assert_eq!(im.entries.len(), 74);
    assert_eq!(im.chunks, 207);
    assert_eq!(im.entries["blk.1.ffn_down_exps.weight"].counts.len(), 32);
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("im.gguf");
    im.write_gguf(&g).unwrap();
    assert_eq!(Imatrix::read(&g).unwrap(), im);
    let d = dir.path().join("im.dat");
    im.write_legacy(&d).unwrap();
    let legacy = Imatrix::read(&d).unwrap();
    assert_eq!(legacy.chunks, 207);
    for (name, e) in &im.entries {
        let k = e.sum2.len() / e.counts.len();
        for m in 0..e.counts.len() {
            let n_mat = e.counts.len();
            let (a, b) = (
                im.weights(name, m, k, n_mat).unwrap(),
                legacy.weights(name, m, k, n_mat).unwrap(),
            );
            match (a, b) {
                (Some(a), Some(b)) => {
                    for (x, y) in a.iter().zip(&b) {
                        assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-6), "{name}: {x} vs {y}");
                    }
                }
                (a, b) => assert_eq!(a.is_none(), b.is_none(), "{name}"),
            }
        }
    }
    std::fs::write(dir.path().join("bad.dat"), [7u8, 0, 0]).unwrap();
    assert!(
        Imatrix::read(&dir.path().join("bad.dat")).is_err(),
        "truncated legacy file"
    );
    // Found by the fuzzer: a negative name length.
    let negative = [1i32.to_le_bytes(), (-5i32).to_le_bytes()].concat();
    assert!(Imatrix::parse_legacy(&negative, std::path::Path::new("neg.dat")).is_err());
}

#[test]
fn collected_imatrix_has_llama_cpp_structure_and_agrees_with_it() {
    let reference = Imatrix::read(&fixtures().join("imatrix.gguf")).unwrap();
    let file = f16();
    let mut collect = Collect::new(CpuBackend::default());
    let model = Model::load(&file, &mut collect, |_, _| {}).unwrap();
    let text = std::fs::read_to_string(fixtures().join("austen.txt")).unwrap();
    let tok = lowbit::tokenizer::Tokenizer::from_gguf(&file).unwrap();
    let tokens = tok.encode(&text[..100_000], true, false).unwrap();
    let mut session = model.session(&mut collect, 256).unwrap();
    for c in 0..8 {
        session.reset();
        model
            .forward(&mut collect, &mut session, &tokens[c * 256..(c + 1) * 256], false)
            .unwrap();
    }
    let mut mine = collect.imatrix(vec!["austen".into()], 8, 256);
    mine.entries.remove("output.weight");
    assert_eq!(
        mine.entries.keys().collect::<Vec<_>>(),
        reference.entries.keys().collect::<Vec<_>>(),
        "same tensors as llama-imatrix"
    );
    let mut correlations = Vec::new();
    for (name, e) in &mine.entries {
        let r = &reference.entries[name];
        assert_eq!((e.sum2.len(), e.counts.len()), (r.sum2.len(), r.counts.len()), "{name}");
        if e.counts.len() == 1 {
            assert_eq!(e.counts[0], 2048.0, "{name}: one count per token");
        } else {
            assert_eq!(
                e.counts.iter().sum::<f32>(),
                2048.0 * 4.0,
                "{name}: 4 experts per token"
            );
        }
        // Means over different text: correlated with llama.cpp's.
        let k = e.sum2.len() / e.counts.len();
        let mean = |im: &Imatrix| -> Vec<f64> {
            (0..e.counts.len())
                .flat_map(|m| im.weights(name, m, k, e.counts.len()).unwrap().unwrap_or(vec![0.0; k]))
                .map(f64::from)
                .collect()
        };
        let (a, b) = (mean(&mine), mean(&reference));
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        let corr = cov / (va * vb).sqrt();
        eprintln!("{name}: correlation {corr:.3}");
        correlations.push(corr);
    }
    correlations.sort_by(f64::total_cmp);
    let median = correlations[correlations.len() / 2];
    assert!(
        median > 0.9 && correlations[0] > 0.5,
        "median {median}, min {}",
        correlations[0]
    );
}

#[test]
fn budget_solver_spends_bytes_where_they_buy_the_most() {
    let opt = |v: &[(BlockType, u64, f64)]| v.to_vec();
    let sens = vec![
        Sensitivity {
            index: 0,
            options: opt(&[
                (BlockType::IQ1_S, 100, 1.0),
                (BlockType::IQ2_XXS, 130, 0.2),
                (BlockType::Q4_K, 290, 0.01),
            ]),
        },
        Sensitivity {
            index: 1,
            options: opt(&[
                (BlockType::IQ1_S, 100, 0.3),
                (BlockType::IQ2_XXS, 130, 0.25),
                (BlockType::Q4_K, 290, 0.2),
            ]),
        },
    ];
    assert_eq!(
        allocate(&sens, 200, 0).unwrap(),
        vec![BlockType::IQ1_S, BlockType::IQ1_S]
    );
    assert_eq!(
        allocate(&sens, 230, 0).unwrap(),
        vec![BlockType::IQ2_XXS, BlockType::IQ1_S]
    );
    assert_eq!(
        allocate(&sens, 420, 0).unwrap(),
        vec![BlockType::Q4_K, BlockType::IQ2_XXS]
    );
    assert!(allocate(&sens, 199, 0).is_err(), "below the smallest plan");
    // Dominated and non-convex options are dropped: Q2_K costs more than IQ2_XXS and
    // helps less; IQ1_M lies above the line from IQ1_S to IQ2_XXS.
    let s = Sensitivity::new(
        0,
        vec![
            (BlockType::Q2_K, 160, 0.5),
            (BlockType::IQ1_S, 100, 1.0),
            (BlockType::IQ2_XXS, 130, 0.2),
            (BlockType::IQ1_M, 112, 0.9),
            (BlockType::Q4_K, 290, 0.01),
        ],
    );
    let kept: Vec<BlockType> = s.options.iter().map(|o| o.0).collect();
    assert_eq!(kept, vec![BlockType::IQ1_S, BlockType::IQ2_XXS, BlockType::Q4_K]);
    assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
    assert_eq!(parse_size("9MB").unwrap(), 9_000_000);
    assert!(parse_size("9 parsecs").is_err());
}

#[test]
fn ud_iq1_s_output_is_a_standard_gguf_and_interruptions_leave_nothing() {
    let source = f16();
    let planned = plan(&source, &Recipe::preset("ud-iq1_s").unwrap().unwrap());
    let im = Imatrix::read(&fixtures().join("imatrix.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ud.gguf");
    quantize_file(&source, &planned, &out, Some(&im), |_, _| {}).unwrap();
    let q = File::open(&out).unwrap();
    assert!(lowbit::inspect::report(&q).to_lowercase().contains("iq1_s"));
    assert_eq!(
        q.tensors().map(|t| t.info.name.clone()).collect::<Vec<_>>(),
        source.tensors().map(|t| t.info.name.clone()).collect::<Vec<_>>(),
        "same tensors, same order"
    );
    let meta = |k: &str| q.metadata(k).cloned();
    assert_eq!(
        meta("general.file_type"),
        Some(Value::U32(24)),
        "LLAMA_FTYPE_MOSTLY_IQ1_S"
    );
    assert_eq!(meta("general.quantization_version"), Some(Value::U32(2)));
    assert_eq!(
        meta("general.architecture"),
        source.metadata("general.architecture").cloned()
    );
    assert_eq!(
        meta("tokenizer.ggml.merges"),
        source.metadata("tokenizer.ggml.merges").cloned()
    );
    let data_start = q.tensors().map(|t| t.info.file_offset).min().unwrap();
    for t in q.tensors() {
        assert_eq!(
            (t.info.file_offset - data_start) % 32,
            0,
            "{}: aligned to 32",
            t.info.name
        );
    }
    // It runs, and the F16 model's top choice survives at most positions.
    let tokens: Vec<u32> = (0..16).map(|i| 100 + 37 * i).collect();
    let run = |f: &File| {
        let mut b = CpuBackend::default();
        let m = Model::load(f, &mut b, |_, _| {}).unwrap();
        let mut s = m.session(&mut b, 16).unwrap();
        m.forward(&mut b, &mut s, &tokens, true).unwrap()
    };
    let (a, b) = (run(&source), run(&q));
    assert!(b.iter().all(|v| v.is_finite()));
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
    let agree = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    assert!(agree >= 8, "top-1 agreement {agree}/16");

    // A plan naming a tensor the source lacks fails mid-write: no output appears, and an
    // existing output is left as it was.
    let mut broken = planned.clone();
    broken[50].name = "blk.9.missing.weight".into();
    let keep = dir.path().join("keep.gguf");
    std::fs::write(&keep, b"previous contents").unwrap();
    assert!(quantize_file(&source, &broken, &keep, None, |_, _| {}).is_err());
    assert_eq!(std::fs::read(&keep).unwrap(), b"previous contents");
    let fresh = dir.path().join("fresh.gguf");
    assert!(quantize_file(&source, &broken, &fresh, None, |_, _| {}).is_err());
    assert!(!fresh.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn collecting_works_through_the_gpu_backend_too() {
    // The collector wraps any backend: one chunk on lavapipe gives the CPU's statistics.
    let file = f16();
    let tokens: Vec<u32> = (0..24).map(|i| 50 + 13 * i).collect();
    let stats = |backend: &mut dyn FnMut() -> Imatrix| backend();
    let mut on_cpu = || {
        let mut c = Collect::new(CpuBackend::default());
        let m = Model::load(&file, &mut c, |_, _| {}).unwrap();
        let mut s = m.session(&mut c, 24).unwrap();
        m.forward(&mut c, &mut s, &tokens, false).unwrap();
        c.imatrix(vec![], 1, 24)
    };
    let mut on_gpu = || {
        let g = lowbit::gpu::GpuBackend::new(lowbit::gpu::GpuOptions::default()).unwrap();
        let mut c = Collect::new(g);
        let m = Model::load(&file, &mut c, |_, _| {}).unwrap();
        let mut s = m.session(&mut c, 24).unwrap();
        m.forward(&mut c, &mut s, &tokens, false).unwrap();
        let _ = c.inner.name();
        c.imatrix(vec![], 1, 24)
    };
    let (a, b) = (stats(&mut on_cpu), stats(&mut on_gpu));
    assert_eq!(
        a.entries.keys().collect::<Vec<_>>(),
        b.entries.keys().collect::<Vec<_>>()
    );
    for (name, e) in &a.entries {
        let f = &b.entries[name];
        assert_eq!(e.counts, f.counts, "{name}: same routing");
        for (x, y) in e.sum2.iter().zip(&f.sum2) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1.0), "{name}: {x} vs {y}");
        }
    }
}

/// `Imatrix::read`'s error for `path`, as text.
fn imatrix_err(path: &std::path::Path) -> String {
    match Imatrix::read(path) {
        Ok(im) => panic!("{} read as an imatrix of {} entries", path.display(), im.entries.len()),
        Err(e) => e.to_string(),
    }
}

/// Imatrix entries that do not fit the tensor they are applied to, counts that match
/// neither one nor every matrix, and files that are not imatrices are errors that name
/// the problem (and the tensor), never a panic or a silently ignored importance matrix.
#[test]
fn imatrix_entries_of_the_wrong_size_and_non_imatrix_files_are_errors() {
    let source = f16();
    let good = Imatrix::read(&fixtures().join("imatrix.gguf")).unwrap();
    let recipe = Recipe::parse("^output\\.weight$ = Q4_K\n^blk\\.1\\.ffn_down_exps\\.weight$ = Q4_K\n").unwrap();
    let planned = plan(&source, &recipe);
    let pick = |name: &str| planned.iter().find(|p| p.name == name).unwrap().clone();
    let (out, exps) = (pick("output.weight"), pick("blk.1.ffn_down_exps.weight"));
    let values = |name: &str| source.tensor(name).unwrap().dequantize().unwrap();
    let (out_values, exps_values) = (values("output.weight"), values("blk.1.ffn_down_exps.weight"));
    assert!(quantize_values(&out_values, &out, Some(&good)).is_ok());
    assert!(quantize_values(&exps_values, &exps, Some(&good)).is_ok());
    let with = |name: &str, sum2: Vec<f32>, counts: Vec<f32>| {
        let mut im = good.clone();
        im.entries
            .insert(name.into(), lowbit::quantize::imatrix::Entry { sum2, counts });
        im
    };
    let err = |r: lowbit::Result<Vec<u8>>| r.expect_err("quantized with a misfit imatrix").to_string();

    // Rows of another length: 128 values for output.weight's rows of 256.
    let e = err(quantize_values(
        &out_values,
        &out,
        Some(&with("output.weight", vec![1.0; 128], vec![1.0])),
    ));
    assert!(
        e.contains("'output.weight'") && e.contains("128 values") && e.contains("rows of 256"),
        "{e}"
    );
    // 16 experts' statistics for a tensor of 32 experts.
    let im = with("blk.1.ffn_down_exps.weight", vec![1.0; 256 * 16], vec![1.0; 16]);
    let e = err(quantize_values(&exps_values, &exps, Some(&im)));
    assert!(
        e.contains("'blk.1.ffn_down_exps.weight'") && e.contains("4096 values") && e.contains("32 x 256"),
        "{e}"
    );
    // 32 matrices with 31 counts (used to index past the counts: a panic).
    let im = with("blk.1.ffn_down_exps.weight", vec![1.0; 256 * 32], vec![1.0; 31]);
    let e = err(quantize_values(&exps_values, &exps, Some(&im)));
    assert!(e.contains("31 counts") && e.contains("32 matrices"), "{e}");
    // A negative count.
    let im = with("output.weight", vec![1.0; 256], vec![-1.0]);
    let e = err(quantize_values(&out_values, &out, Some(&im)));
    assert!(e.contains("'output.weight'") && e.contains("count -1"), "{e}");
    // Whole rows, but twice the tensor's matrices: only the size of the tensor tells.
    let im = with("output.weight", vec![1.0; 512], vec![1.0]);
    let e = err(quantize_values(&out_values, &out, Some(&im)));
    assert!(
        e.contains("'output.weight'") && e.contains("512 values") && e.contains("1 x 256"),
        "{e}"
    );
    assert!(good.weights("blk.0.ffn_down.weight", 0, 768, 1).unwrap().is_some());
    assert!(
        good.weights("blk.1.ffn_down_exps.weight", 31, 256, 32)
            .unwrap()
            .is_some()
    );

    // The same misfits through the files: GGUF counts that match neither 1 nor n_mat ...
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("bad.gguf");
    let e = with("blk.1.ffn_down_exps.weight", vec![1.0; 256 * 32], vec![1.0; 31])
        .write_gguf(&g)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("31 counts") && e.contains("8192 values"),
        "lowbit will not write one: {e}"
    );
    let meta = vec![("general.type".to_string(), Value::String("imatrix".into()))];
    let f32_spec = |name: &str, dims: Vec<u64>| lowbit::gguf::TensorSpec {
        name: name.into(),
        ty: BlockType::F32,
        dims,
    };
    let specs = [
        f32_spec("blk.1.ffn_down_exps.weight.in_sum2", vec![256, 32]),
        f32_spec("blk.1.ffn_down_exps.weight.counts", vec![1, 31]),
    ];
    lowbit::gguf::write(&g, &meta, &specs, lowbit::gguf::SplitPolicy::Single, |i, w| {
        w.write_all(&vec![0u8; [256 * 32 * 4, 31 * 4][i]])
            .map_err(|e| lowbit::Error::io("", e))
    })
    .unwrap();
    let e = imatrix_err(&g);
    assert!(
        e.contains("blk.1.ffn_down_exps.weight") && e.contains("31 counts for 32 matrices"),
        "{e}"
    );
    // ... and a legacy entry of 300 values for rows of 256, found when it is used.
    let legacy = dir.path().join("bad.dat");
    with("output.weight", vec![1.0; 300], vec![1.0])
        .write_legacy(&legacy)
        .unwrap();
    let im = Imatrix::read(&legacy).unwrap();
    let e = err(quantize_values(&out_values, &out, Some(&im)));
    assert!(e.contains("'output.weight'") && e.contains("300 values"), "{e}");
    // A legacy entry with a negative ncall.
    // (1 entry; name length 1, "x"; ncall -3; no values)
    let bytes = [
        &1i32.to_le_bytes()[..],
        &1i32.to_le_bytes(),
        b"x",
        &(-3i32).to_le_bytes(),
        &0i32.to_le_bytes(),
    ]
    .concat();
    let e = Imatrix::parse_legacy(&bytes, std::path::Path::new("neg.dat"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative ncall -3"), "{e}");

    // A model passed as an imatrix used to read as one with no entries.
    let e = imatrix_err(&fixtures().join("tiny-moe-f16.gguf"));
    assert!(
        e.contains("not an imatrix") && e.contains("general.type is \"model\""),
        "{e}"
    );
    // A GGUF that says imatrix but holds another tensor.
    let bad_tensor = dir.path().join("extra.gguf");
    let spec = f32_spec("token_embd.weight", vec![8]);
    lowbit::gguf::write(
        &bad_tensor,
        &meta,
        &[spec],
        lowbit::gguf::SplitPolicy::Single,
        |_, w| w.write_all(&[0u8; 32]).map_err(|e| lowbit::Error::io("", e)),
    )
    .unwrap();
    let e = imatrix_err(&bad_tensor);
    assert!(e.contains("token_embd.weight") && e.contains("not an imatrix"), "{e}");
}
