//! `examples/embed.rs` runs headless (lavapipe in CI) and prints its frame-time report:
//! frames and tokens grow throughout, generation finishes, and the worst frame while
//! generating one layer per frame is within the example's bound (it exits with an
//! error otherwise).

use std::path::PathBuf;
use std::process::Command;

/// The example's binary, which `cargo test` builds beside the tests.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile
        .join("examples")
        .join(format!("embed{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_embedding_example_reports_bounded_frames_and_finishes() {
    let model = format!("{}/models/SmolLM2-135M-Instruct.Q4_1.gguf", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(example())
        .args([model.as_str(), "--layers", "1", "--tokens", "8"])
        .output()
        .expect("run examples/embed (cargo test builds it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<(usize, usize)> = stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("frame ")?;
            let (frame, rest) = rest.split_once(':')?;
            let tokens = rest.rsplit_once(", ")?.1.strip_suffix(" tokens")?;
            Some((frame.parse().ok()?, tokens.parse().ok()?))
        })
        .collect();
    assert!(
        frames.len() > 8 * 30,
        "a frame per layer of every token: {} frames",
        frames.len()
    );
    for (i, pair) in frames.windows(2).enumerate() {
        assert_eq!(pair[1].0, pair[0].0 + 1, "frame numbers at {i}");
        assert!(pair[1].1 >= pair[0].1, "token counts never fall");
    }
    assert_eq!(frames.last().unwrap().1, 8, "generation finished");
    // Tokens come throughout, not all at the end: one every ~31 frames (30 layers + head).
    assert!(frames[frames.len() / 2].1 >= 3, "{:?}", frames[frames.len() / 2]);
    assert!(stdout.contains("frames only: 120 frames"), "{stdout}");
    assert!(stdout.contains("generating (1 layer(s) per frame)"), "{stdout}");
}
