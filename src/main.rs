//! The `lowbit` command line. Every subcommand only calls the library.

use clap::{Parser, Subcommand};
use lowbit::backend::Backend;
use lowbit::generate::Generator;
use lowbit::gguf::File;
use lowbit::model::Model;
use lowbit::tokenizer::Tokenizer;
use lowbit::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lowbit",
    version,
    about = "Dynamic low-bit quantization and GPU inference for GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print metadata, the tensor table, total size and bits per weight per tensor class.
    Inspect {
        /// A GGUF file (any shard of a split model); not needed with --r1.
        #[arg(required_unless_present = "r1")]
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print the device memory lowbit needs for the model.
        #[arg(long)]
        plan: bool,
        /// Plan the full 61-layer DeepSeek-R1 quantized with this recipe (e.g. ud-iq1_s),
        /// from its published shapes, without the download.
        #[arg(long)]
        r1: Option<String>,
        /// Context for the cache in the plan.
        #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
        ctx_size: usize,
    },
    /// Write one tensor dequantized as little-endian f32, ggml element order (ne[0] fastest).
    Dequant {
        file: PathBuf,
        tensor: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
    /// Generate text from a prompt.
    Generate {
        #[command(flatten)]
        run: RunArgs,
        #[arg(short = 'p', long)]
        prompt: String,
        #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
        n_predict: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Time each operation of the prefill and of the decode steps and print the
        /// tables (on the GPU every operation is waited for on its own, so it runs slower).
        #[arg(long)]
        profile: bool,
        /// Keep generating past end-of-text tokens (fixed-length runs for timing).
        #[arg(long)]
        ignore_eos: bool,
        /// Run the prompt once, untimed, before the timed prefill, as llama-bench's warm-up
        /// run does: the timed one then finds the weights mapped and the caches warm.
        #[arg(long)]
        warmup: bool,
    },
    /// Chat interactively, with the model's chat template.
    Chat {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
        n_predict: usize,
    },
    /// Write all logits of a token sequence as little-endian f32, position-major.
    Logits {
        #[command(flatten)]
        run: RunArgs,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',', conflicts_with = "tokens_file")]
        tokens: Vec<u32>,
        /// A file of token ids (a JSON array, or ids separated by commas or whitespace).
        #[arg(long)]
        tokens_file: Option<PathBuf>,
        /// Feed the tokens this many at a time (1: one by one, as decoding does; 0: all
        /// in one prefill).
        #[arg(long, default_value_t = 0)]
        step: usize,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Write a GGUF whose tensor types follow a recipe, rules, or a bit budget.
    Quantize(QuantizeArgs),
    /// Write a GGUF with a real architecture's shapes and random weights, typed by a
    /// recipe (no tokenizer: run it with `logits --tokens` or `bench`).
    Synth {
        /// The architecture whose names, shapes and metadata to use: r1 (DeepSeek-R1/V3).
        #[arg(long, default_value = "r1")]
        like: String,
        /// Layers in all.
        #[arg(long, default_value_t = lowbit::model::r1::N_LAYER)]
        layers: usize,
        /// Leading dense layers (the rest are MoE).
        #[arg(long = "dense-layers", default_value_t = lowbit::model::r1::DENSE_LEAD)]
        dense_layers: usize,
        /// A preset (ud-iq1_s, ud-iq1_m, ud-iq2_xxs, ud-q2_k_xl, uniform-TYPE) or a recipe file.
        #[arg(long, default_value = "ud-iq1_s")]
        recipe: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Collect an importance matrix (mean squared inputs of every product) over a text.
    Imatrix {
        #[command(flatten)]
        run: RunArgs,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Chunks to process (default: all).
        #[arg(long)]
        chunks: Option<usize>,
        /// Write llama.cpp's legacy .dat format instead of GGUF.
        #[arg(long)]
        legacy: bool,
    },
    /// Perplexity of a text under llama.cpp's protocol (second half of each chunk scored).
    Perplexity {
        #[command(flatten)]
        run: RunArgs,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Chunks to score (default: all).
        #[arg(long)]
        chunks: Option<usize>,
        /// Save the scored positions' log-probabilities for a later --kld-base.
        #[arg(long)]
        save_logits: Option<PathBuf>,
        /// Report mean KL divergence and top-1 agreement against a --save-logits file.
        #[arg(long)]
        kld_base: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct QuantizeArgs {
    input: PathBuf,
    /// Output GGUF (not needed with --dry-run).
    output: Option<PathBuf>,
    /// A preset (ud-iq1_s, ud-iq1_m, ud-iq2_xxs, ud-q2_k_xl, uniform-TYPE) or a recipe file.
    #[arg(long)]
    recipe: Option<String>,
    /// REGEX=TYPE, before the recipe's rules (first match wins); repeatable.
    #[arg(long = "tensor-type")]
    tensor_type: Vec<String>,
    /// Importance matrix (llama.cpp GGUF or legacy .dat).
    #[arg(long)]
    imatrix: Option<PathBuf>,
    /// Choose types per tensor to this average bits per weight (all tensors counted).
    #[arg(long, conflicts_with = "target_size")]
    target_bpw: Option<f64>,
    /// Choose types per tensor to this file size, header included (e.g. 1.2GiB, 9MB).
    #[arg(long)]
    target_size: Option<String>,
    /// Calibrate each tensor class's damage by the KL divergence its quantization causes
    /// on this text (CPU), for a target.
    #[arg(long)]
    calibrate: Option<PathBuf>,
    /// Chunks of 256 tokens of the calibration text.
    #[arg(long, default_value_t = 4)]
    calibrate_chunks: usize,
    /// Rows sampled per matrix when measuring sensitivity for a target.
    #[arg(long, default_value_t = 64)]
    sample_rows: usize,
    /// Write the chosen types as a recipe file that --recipe replays.
    #[arg(long)]
    write_recipe: Option<PathBuf>,
    /// Draw bits per tensor across layers as an SVG heat map.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the plan and size without writing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(short = 'm', long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Threads of the fast CPU backend (0: the physical cores).
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
    /// Context size (tokens); for perplexity, the chunk size.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 2048)]
    ctx_size: usize,
    /// Write the experts the router picks per token and MoE layer to this file
    /// (`position layer expert:weight ...` lines).
    #[arg(long)]
    router_trace: Option<PathBuf>,
    /// Device memory lowbit may use (e.g. 6GiB, 900MiB); routed experts stream through
    /// the part the resident weights, KV cache and scratch leave (GPU backend).
    #[arg(long, value_parser = lowbit::stream::parse_size)]
    vram_budget: Option<u64>,
    /// Host memory lowbit may hold (e.g. 20GiB): non-expert weights and the KV cache are
    /// read into it, and routed experts stream through a host cache in the rest, read
    /// with explicit reads (never mapped); code, tokenizer and activations are outside it.
    #[arg(long, value_parser = lowbit::stream::parse_size)]
    ram_budget: Option<u64>,
    /// Which streamed expert to evict: lru, or reuse (layer-aware reuse distance).
    #[arg(long, default_value = "reuse", value_parser = lowbit::stream::PolicyKind::parse)]
    expert_policy: lowbit::stream::PolicyKind,
    /// Predict the next MoE layer's experts with its router and upload them early.
    #[arg(long)]
    prefetch: bool,
    /// Read weights under --ram-budget through the page cache (pread) instead of
    /// around it (O_DIRECT, the default where the file system has it).
    #[arg(long)]
    page_cache: bool,
    /// Print speed, memory use and (when experts stream) streaming statistics.
    #[arg(long)]
    stats: bool,
}

impl RunArgs {
    /// Streaming options for a context of `n_ctx` positions.
    fn stream(&self, n_ctx: usize) -> lowbit::stream::StreamOptions {
        lowbit::stream::StreamOptions {
            vram_budget: self.vram_budget,
            ram_budget: self.ram_budget,
            policy: self.expert_policy,
            prefetch: self.prefetch,
            n_ctx,
            page_cache: self.page_cache,
        }
    }

    /// With --stats: memory use and what streaming did.
    fn print_stats<B: Backend>(&self, backend: &B) {
        if !self.stats {
            return;
        }
        eprintln!("memory: {}", backend.memory_report());
        for s in backend.stream_stats().into_iter().chain(backend.host_stats()) {
            eprint!("{}", s.report());
        }
    }

    fn start_trace<B: Backend>(&self, session: &mut lowbit::model::Session<B>) {
        if self.router_trace.is_some() {
            session.trace = Some(Vec::new());
        }
    }

    fn finish_trace<B: Backend>(&self, session: &mut lowbit::model::Session<B>) -> Result<()> {
        if let (Some(path), Some(records)) = (&self.router_trace, session.trace.take()) {
            let mut text = Vec::new();
            lowbit::model::write_trace(&mut text, &records).map_err(|e| Error::io(path, e))?;
            write_atomic(path, &text)?;
            eprintln!("router trace: {} records -> {}", records.len(), path.display());
        }
        Ok(())
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum BackendChoice {
    /// A real GPU when wgpu finds one, else the fast CPU backend.
    Auto,
    /// wgpu's adapter, whatever it is (lavapipe included).
    Gpu,
    /// The fast CPU backend: quantized activations, SIMD kernels, one thread pool.
    Cpu,
    /// The exact CPU reference (every product in f32 from dequantized rows).
    CpuRef,
}

#[derive(clap::Args)]
struct SamplingArgs {
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
}

impl SamplingArgs {
    fn config(&self) -> lowbit::sample::SamplerConfig {
        lowbit::sample::SamplerConfig {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
}

#[derive(Subcommand)]
enum Bench {
    /// matvec weight-read GB/s per format next to a plain copy kernel on the same adapter,
    /// and matmul GFLOP/s. LOWBIT_NO_SUBGROUPS=1 / LOWBIT_NO_UNIFORM_X=1 force the fallbacks.
    Kernels {
        /// Weight shapes as K x ROWS (ggml ne[0] x ne[1]).
        #[arg(long, value_delimiter = ',', default_value = "4096x4096,7168x2048")]
        shapes: Vec<String>,
        /// Formats (default: every GPU format).
        #[arg(long, value_delimiter = ',')]
        formats: Vec<String>,
        /// Activation columns for matvec (1..=8 each).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        cols: Vec<usize>,
        /// Also time routed experts (matvec_id, 8 experts per token) for each --cols
        /// value as the number of tokens, each matrix shape as one expert.
        #[arg(long)]
        routed: bool,
        /// Activation columns for matmul (0 skips it).
        #[arg(long, value_delimiter = ',', default_value = "512")]
        matmul_cols: Vec<usize>,
        /// Timed batches per measurement.
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Size of the copy-kernel buffer, MiB (capped at the binding limit).
        #[arg(long, default_value_t = 128)]
        copy_mib: u64,
        /// Also write the rows (and the baselines, as kernels `copy` and `read`) as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// The adapter lowbit picks: name, driver, type, subgroup sizes, features, limits
    /// and the kernel table chosen for it.
    Adapter {
        /// Fail unless the adapter is a real GPU (not a CPU adapter such as lavapipe).
        #[arg(long)]
        require_gpu: bool,
    },
    /// Expert streaming: hit rate, bytes moved, stall and decode speed per budget and
    /// policy (lru, reuse, reuse+prefetch, and Belady's optimum offline), decoding one
    /// token at a time. Budgets are VRAM fractions (--budgets) or RAM sizes
    /// (--ram-budget, measured against the disk's cold sequential read rate).
    Stream {
        #[arg(short = 'm', long)]
        model: PathBuf,
        /// A text to teacher-force; without it, the model's greedy continuation of its BOS
        /// token (for files without a tokenizer, such as lowbit synth's).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = BackendChoice::Gpu)]
        backend: BackendChoice,
        /// VRAM budgets as fractions of all routed-expert bytes.
        #[arg(long, value_delimiter = ',', default_value = "1,0.5,0.25,0.125")]
        budgets: Vec<f64>,
        /// RAM budgets (e.g. 4GiB,2GiB) instead of VRAM fractions: experts stream through
        /// the host cache.
        #[arg(long, value_delimiter = ',', value_parser = lowbit::stream::parse_size, conflicts_with = "budgets")]
        ram_budget: Vec<u64>,
        /// Read through the page cache instead of around it (with --ram-budget).
        #[arg(long)]
        page_cache: bool,
        /// Positions to decode per run.
        #[arg(long, default_value_t = 1000)]
        tokens: usize,
        /// Steps not timed at the start of each run (pipeline compilation, first reads).
        #[arg(long, default_value_t = 8)]
        warmup: usize,
        /// Print the rows as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Draw hit rate against budget, one line per policy, into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Unsupported(format!("shape '{s}' is not K x ROWS, e.g. 4096x4096"));
    let (k, rows) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((
        k.trim().parse().map_err(|_| bad())?,
        rows.trim().parse().map_err(|_| bad())?,
    ))
}

fn bench_kernels(
    shapes: &[String],
    formats: &[String],
    (cols, routed, matmul_cols): (&[usize], bool, &[usize]),
    iters: usize,
    copy_mib: u64,
    csv: Option<&std::path::Path>,
) -> Result<()> {
    use lowbit::gpu::{GPU_FORMATS, GpuContext, GpuOptions, bench};
    let formats: Vec<lowbit::BlockType> = if formats.is_empty() {
        GPU_FORMATS.to_vec()
    } else {
        formats
            .iter()
            .map(|f| lowbit::BlockType::parse(f))
            .collect::<Result<_>>()?
    };
    if let Some(c) = cols.iter().find(|c| !(1..=lowbit::gpu::matvec::MAX_COLS).contains(c)) {
        return Err(Error::Unsupported(format!("--cols {c}: matvec takes 1..=8 columns")));
    }
    let shapes: Vec<(usize, usize)> = shapes.iter().map(|s| parse_shape(s)).collect::<Result<_>>()?;
    let ctx = GpuContext::new(GpuOptions::from_env()?)?;
    let (copy, read) = bench::baselines(&ctx, copy_mib << 20, iters, 5)?;
    println!("adapter: {}", ctx.adapter_name);
    println!(
        "features: subgroups {}, uniform activations up to {} KiB; matvec {:?}",
        ctx.features.subgroups,
        ctx.max_uniform_x_bytes >> 10,
        ctx.tuning
    );
    let clock = bench::Clock::of(&ctx);
    println!("timing: {}", clock.describe());
    let clock = clock.name();
    let copy_mib = copy_mib.min(ctx.max_binding_bytes >> 20);
    println!(
        "copy kernel: {copy:.2} GB/s (bytes read + written), read-only kernel: {read:.2} GB/s ({copy_mib} MiB buffer)\n"
    );
    println!(
        "| kernel | format | K x rows | cols | weights MB | copies | µs | weight GB/s | of read-only | of copy | GFLOP/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let t = &ctx.tuning;
    let lattice = if t.shared_lattice { "shared" } else { "storage" };
    let variant = format!("{:?}/{:?}/{lattice}/{:?}", t.layout, t.rows, t.matmul);
    let mut lines = vec![
        "kernel,format,k,rows,cols,weight_bytes,copies,seconds,gbps,of_read,of_copy,gflops,clock,adapter,variant,subgroups".to_string(),
    ];
    let tail = format!("{clock},\"{}\",{variant},{}", ctx.adapter_name, ctx.features.subgroups);
    lines.push(format!("copy,-,0,0,0,{},1,0,{copy},,,,{tail}", copy_mib << 20));
    lines.push(format!("read,-,0,0,0,{},1,0,{read},,,,{tail}", copy_mib << 20));
    for &(k, rows) in &shapes {
        for &ty in &formats {
            if !k.is_multiple_of(ty.block_size()) {
                println!(
                    "| - | {ty} | {k} x {rows} | skipped: K is not a multiple of the {} block |",
                    ty.block_size()
                );
                continue;
            }
            use lowbit::gpu::Kernel;
            let runs = cols.iter().map(|&c| (Kernel::Matvec, c));
            let runs = runs.chain(cols.iter().filter(|_| routed).map(|&c| (Kernel::MatvecId, c)));
            let runs = runs.chain(matmul_cols.iter().filter(|&&c| c > 0).map(|&c| (Kernel::Matmul, c)));
            for (kernel, c) in runs {
                let r = bench::bench_kernel(&ctx, kernel, ty, (rows, k), c, iters)?;
                let kernel = kernel.name();
                println!(
                    "| {kernel} | {ty} | {k} x {rows} | {c} | {:.1} | {} | {:.1} | {:.2} | {:.0}% | {:.0}% | {:.1} |",
                    r.weight_bytes as f64 / 1e6,
                    r.copies,
                    r.seconds * 1e6,
                    r.gbps(),
                    100.0 * r.gbps() / read,
                    100.0 * r.gbps() / copy,
                    r.gflops()
                );
                lines.push(format!(
                    "{kernel},{ty},{k},{rows},{c},{},{},{},{},{},{},{},{tail}",
                    r.weight_bytes,
                    r.copies,
                    r.seconds,
                    r.gbps(),
                    r.gbps() / read,
                    r.gbps() / copy,
                    r.gflops()
                ));
            }
        }
    }
    if let Some(path) = csv {
        write_atomic(path, (lines.join("\n") + "\n").as_bytes())?;
    }
    Ok(())
}

fn bench_adapter(require_gpu: bool) -> Result<()> {
    let ctx = lowbit::gpu::GpuContext::new(lowbit::gpu::GpuOptions::from_env()?)?;
    let info = ctx.device.adapter_info();
    println!("adapter: {} ({:?})", info.name, info.backend);
    println!(
        "type: {:?}, vendor {:#06x}, device {:#06x}",
        info.device_type, info.vendor, info.device
    );
    println!("driver: {} {}", info.driver, info.driver_info);
    println!(
        "subgroup sizes: {}..={}",
        info.subgroup_min_size, info.subgroup_max_size
    );
    println!("features in use: {:?}", ctx.device.features());
    let l = ctx.device.limits();
    println!(
        "limits: storage binding {} MiB, buffer {} MiB, uniform binding {} KiB, workgroup storage {} KiB, invocations per workgroup {}, workgroups per dimension {}",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_uniform_buffer_binding_size >> 10,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroups_per_dimension
    );
    println!("kernel table: {:?}", ctx.tuning);
    if require_gpu && info.device_type == wgpu::DeviceType::Cpu {
        return Err(Error::Gpu(format!(
            "{} is a CPU adapter, not the GPU this check is for (is the GPU's Vulkan driver installed?)",
            info.name
        )));
    }
    Ok(())
}

fn main_with_backend(cli: Cli) -> Result<()> {
    let (choice, threads) = match &cli.command {
        Command::Generate { run, .. }
        | Command::Chat { run, .. }
        | Command::Logits { run, .. }
        | Command::Perplexity { run, .. }
        | Command::Imatrix { run, .. } => (run.backend, run.threads),
        _ => unreachable!("only model commands reach here"),
    };
    let choice = match choice {
        BackendChoice::Auto if lowbit::gpu::context::real_gpu_present() => BackendChoice::Gpu,
        BackendChoice::Auto => BackendChoice::Cpu,
        other => other,
    };
    match choice {
        BackendChoice::Cpu => run_model(lowbit::cpu::CpuBackend::fast(threads)?, cli.command),
        BackendChoice::CpuRef => run_model(lowbit::cpu::CpuBackend::default(), cli.command),
        BackendChoice::Gpu | BackendChoice::Auto => run_model(
            lowbit::gpu::GpuBackend::new(lowbit::gpu::GpuOptions::from_env()?)?,
            cli.command,
        ),
    }
}

fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Open `run.model` and load it and its tokenizer for a context of `n_ctx` positions.
fn load<B: Backend>(backend: &mut B, run: &RunArgs, n_ctx: usize) -> Result<(File, Model<B>, Tokenizer)> {
    let file = File::open(&run.model)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let model = load_model(&file, backend, run, n_ctx)?;
    Ok((file, model, tokenizer))
}

/// Load the model of `file` for a context of `n_ctx` positions (no tokenizer needed).
fn load_model<B: Backend>(file: &File, backend: &mut B, run: &RunArgs, n_ctx: usize) -> Result<Model<B>> {
    let bar = progress_bar(0, "loading");
    let model = Model::load_with(file, backend, &run.stream(n_ctx), |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(model)
}

fn parse_token_file(path: &std::path::Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::Unsupported(format!("{}: '{s}' is not a token id", path.display())))
        })
        .collect()
}

/// How `generate` decodes.
struct DecodeOptions {
    /// Tokens to generate at most.
    n: usize,
    /// Time every operation of the backend from the second decode step on.
    profile: bool,
    /// Do not stop at the tokenizer's end-of-text tokens.
    ignore_eos: bool,
    /// Run the prompt once before the timed prefill.
    warmup: bool,
}

/// Generate tokens after `prompt_ids` as `opts` says, printing text as it comes. Returns
/// (prefill seconds, decode seconds, tokens generated).
fn generate<B: Backend>(
    g: &mut Generator<B>,
    backend: &mut B,
    prompt_ids: &[u32],
    opts: &DecodeOptions,
) -> Result<(f64, f64, usize)> {
    let DecodeOptions {
        n,
        profile,
        ignore_eos,
        warmup,
    } = *opts;
    if profile && n < 2 {
        return Err(Error::Unsupported(
            "--profile needs -n 2 or more (the first decode step is not timed)".into(),
        ));
    }
    if profile && !backend.start_profile()? {
        return Err(Error::Unsupported(format!(
            "--profile: {} cannot time its operations",
            backend.name()
        )));
    }
    if warmup {
        g.warm_up(backend, prompt_ids)?;
    }
    let t0 = std::time::Instant::now();
    g.prompt(backend, prompt_ids)?;
    let prefill = t0.elapsed().as_secs_f64();
    if let Some(table) = backend.profile_report(1).filter(|_| profile) {
        eprintln!("prefill profile, {} tokens in one pass:\n{table}", prompt_ids.len());
    }
    g.ignore_eos = ignore_eos;
    let t1 = std::time::Instant::now();
    let mut stdout = std::io::stdout();
    let mut generated = 0;
    while generated < n {
        let Some(token) = g.next_token(backend)? else {
            break;
        };
        generated += 1;
        let _ = write!(stdout, "{}", token.text);
        let _ = stdout.flush();
        // The first decode step compiles the one-token pipelines: profile the steps after.
        if profile && generated == 1 {
            backend.start_profile()?;
        }
    }
    let _ = writeln!(stdout);
    Ok((prefill, t1.elapsed().as_secs_f64(), generated))
}

/// `lowbit imatrix`: run the text chunk by chunk (llama-imatrix's chunking: the first
/// token of each chunk is BOS) with every product's inputs collected.
fn imatrix<B: Backend>(
    backend: B,
    run: RunArgs,
    file: PathBuf,
    output: PathBuf,
    chunks: Option<usize>,
    legacy: bool,
) -> Result<()> {
    let mut collect = lowbit::quantize::collect::Collect::new(backend);
    let n_ctx = run.ctx_size;
    let (_, model, tokenizer) = load(&mut collect, &run, n_ctx)?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let tokens = tokenizer.encode(&text, true, false)?;
    let chunks = chunks.unwrap_or(usize::MAX).min(tokens.len() / n_ctx);
    if chunks == 0 {
        return Err(Error::Unsupported(format!(
            "{}: {} tokens make no chunk of {n_ctx}",
            file.display(),
            tokens.len()
        )));
    }
    let mut session = model.session(&mut collect, n_ctx)?;
    let bar = progress_bar(chunks, "imatrix");
    for c in 0..chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let (true, Some(bos)) = (tokenizer.add_bos, tokenizer.bos) {
            chunk[0] = bos;
        }
        session.reset();
        model.forward(&mut collect, &mut session, &chunk, false)?;
        bar.set_position(c as u64 + 1);
    }
    bar.finish_and_clear();
    let mut im = collect.imatrix(vec![file.display().to_string()], chunks, n_ctx);
    // Only the last position reaches the output head here; llama-imatrix skips it too.
    im.entries.remove("output.weight");
    if legacy {
        im.write_legacy(&output)?;
    } else {
        im.write_gguf(&output)?;
    }
    eprintln!(
        "{} entries from {chunks} chunks of {n_ctx} -> {}",
        im.entries.len(),
        output.display()
    );
    Ok(())
}

fn run_model<B: Backend>(mut backend: B, command: Command) -> Result<()> {
    match command {
        Command::Imatrix {
            run,
            file,
            output,
            chunks,
            legacy,
        } => imatrix(backend, run, file, output, chunks, legacy),
        Command::Generate {
            run,
            prompt,
            n_predict,
            sampling,
            profile,
            ignore_eos,
            warmup,
        } => {
            let (_, model, tokenizer) = load(&mut backend, &run, run.ctx_size)?;
            let ids = tokenizer.encode(&prompt, true, true)?;
            let n_ctx = run.ctx_size.min(model.n_ctx_train()).max(ids.len() + 1);
            let tokenizer = std::sync::Arc::new(tokenizer);
            let mut g = Generator::new(model.into(), tokenizer.clone(), &mut backend, n_ctx, sampling.config())?;
            run.start_trace(&mut g.session);
            print!("{prompt}");
            let (prefill, decode, n) = generate(
                &mut g,
                &mut backend,
                &ids,
                &DecodeOptions {
                    n: n_predict,
                    profile,
                    ignore_eos,
                    warmup,
                },
            )?;
            run.finish_trace(&mut g.session)?;
            if run.stats {
                eprintln!("backend: {}", backend.name());
                eprintln!(
                    "prefill: {} tokens in {:.3} s ({:.1} tok/s)",
                    ids.len(),
                    prefill,
                    ids.len() as f64 / prefill
                );
                eprintln!(
                    "decode: {n} tokens in {:.3} s ({:.1} tok/s)",
                    decode,
                    n as f64 / decode.max(1e-9)
                );
            }
            run.print_stats(&backend);
            if let Some(table) = backend.profile_report(n.saturating_sub(1)) {
                eprintln!("decode profile, per token:\n{table}");
            }
            Ok(())
        }
        Command::Chat {
            run,
            sampling,
            n_predict,
        } => {
            let (_, model, tokenizer) = load(&mut backend, &run, run.ctx_size)?;
            let n_ctx = run.ctx_size.min(model.n_ctx_train());
            let tokenizer = std::sync::Arc::new(tokenizer);
            let mut g = Generator::new(model.into(), tokenizer.clone(), &mut backend, n_ctx, sampling.config())?;
            let mut turns: Vec<(String, String)> = Vec::new();
            let stdin = std::io::stdin();
            loop {
                eprint!("> ");
                let mut line = String::new();
                if stdin.read_line(&mut line).map_err(|e| Error::io("stdin", e))? == 0 {
                    run.print_stats(&backend);
                    return Ok(());
                }
                turns.push(("user".into(), line.trim_end().to_string()));
                // Re-render the whole conversation and run only what the cache lacks.
                let ids = tokenizer.encode(&tokenizer.chat_prompt(&turns)?, true, true)?;
                let common = g.history().iter().zip(&ids).take_while(|(a, b)| a == b).count();
                if common < g.history().len() || ids.len() >= n_ctx {
                    g.reset();
                }
                let fresh = ids[g.history().len()..].to_vec();
                generate(
                    &mut g,
                    &mut backend,
                    &fresh,
                    &DecodeOptions {
                        n: n_predict,
                        profile: false,
                        ignore_eos: false,
                        warmup: false,
                    },
                )?;
                let reply = tokenizer.decode(&g.history()[ids.len()..])?;
                turns.push(("assistant".into(), reply));
            }
        }
        Command::Logits {
            run,
            tokens,
            tokens_file,
            step,
            output,
        } => {
            let tokens = match tokens_file {
                Some(f) => parse_token_file(&f)?,
                None => tokens,
            };
            let model = load_model(&File::open(&run.model)?, &mut backend, &run, tokens.len().max(1))?;
            let mut session = model.session(&mut backend, tokens.len().max(1))?;
            run.start_trace(&mut session);
            let mut logits = Vec::new();
            let t = std::time::Instant::now();
            for part in tokens.chunks(if step == 0 { tokens.len().max(1) } else { step }) {
                logits.extend(model.forward(&mut backend, &mut session, part, true)?);
            }
            if run.stats {
                let secs = t.elapsed().as_secs_f64();
                eprintln!(
                    "forward: {} tokens in {secs:.3} s ({:.2} tok/s)",
                    tokens.len(),
                    tokens.len() as f64 / secs
                );
            }
            run.finish_trace(&mut session)?;
            run.print_stats(&backend);
            write_atomic(&output, bytemuck::cast_slice(&logits))?;
            eprintln!(
                "{} positions x {} logits -> {}",
                tokens.len(),
                model.n_vocab(),
                output.display()
            );
            Ok(())
        }
        Command::Perplexity {
            run,
            file,
            chunks,
            save_logits,
            kld_base,
        } => {
            let n_ctx = run.ctx_size;
            let (_, model, tokenizer) = load(&mut backend, &run, n_ctx)?;
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let tokens = tokenizer.encode(&text, true, false)?;
            let chunks = chunks.unwrap_or(usize::MAX).min(tokens.len() / n_ctx);
            let mut session = model.session(&mut backend, n_ctx)?;
            run.start_trace(&mut session);
            let bos = if tokenizer.add_bos { tokenizer.bos } else { None };
            let bar = progress_bar(chunks, "perplexity");
            let base = kld_base.as_deref().map(lowbit::eval::BaseLogprobs::read).transpose()?;
            let mut saved = Vec::new();
            let compare = match (&base, &save_logits) {
                (Some(b), _) => lowbit::eval::Compare::Base(b),
                (None, Some(_)) => lowbit::eval::Compare::Save(&mut saved),
                _ => lowbit::eval::Compare::None,
            };
            let t0 = std::time::Instant::now();
            let scores = lowbit::eval::perplexity(
                &model,
                &mut backend,
                &mut session,
                &tokens,
                n_ctx,
                chunks,
                bos,
                compare,
                |d, _| bar.set_position(d as u64),
            )?;
            bar.finish_and_clear();
            run.finish_trace(&mut session)?;
            if let Some(path) = &save_logits {
                let mut bytes = b"LBKL".to_vec();
                bytes.extend_from_slice(&(model.n_vocab() as u32).to_le_bytes());
                bytes.extend_from_slice(&(scores.nll.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&saved);
                write_atomic(path, &bytes)?;
            }
            eprintln!(
                "{} tokens, {chunks} chunks of {n_ctx}, {} scored, {:.1} s on {}",
                tokens.len(),
                scores.nll.len(),
                t0.elapsed().as_secs_f64(),
                backend.name()
            );
            if let (Some(kld), Some(se), Some(top)) =
                (scores.mean_kld(), scores.kld_stderr(), scores.same_top_fraction())
            {
                println!("mean KLD = {kld:.6} +/- {se:.6}");
                println!("same top = {:.2}%", 100.0 * top);
            }
            let (ppl, err) = scores.perplexity();
            println!("PPL = {ppl:.4} +/- {err:.4}");
            run.print_stats(&backend);
            Ok(())
        }
        _ => unreachable!("only model commands reach here"),
    }
}

/// Print to stdout; a closed pipe (`lowbit … | head`) is not an error worth reporting.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn quantize(a: QuantizeArgs) -> Result<()> {
    use lowbit::quantize::{self as q, budget, report};
    let t0 = std::time::Instant::now();
    let file = File::open(&a.input)?;
    let overrides = a
        .tensor_type
        .iter()
        .map(|s| q::Rule::parse_assignment(s))
        .collect::<Result<Vec<_>>>()?;
    let recipe = match &a.recipe {
        Some(r) => q::Recipe::load(r)?,
        None => q::Recipe::default(),
    }
    .with_overrides(overrides.clone());
    let imatrix = a.imatrix.as_deref().map(q::Imatrix::read).transpose()?;
    let mut plan = q::plan(&file, &recipe);
    let target = match (a.target_bpw, &a.target_size) {
        (Some(bpw), _) => Some((bpw * plan.iter().map(q::Planned::n_elements).sum::<u64>() as f64 / 8.0) as u64),
        // A file size: the tensor data gets what the header and the alignment padding
        // leave (at most alignment - 1 bytes per tensor).
        (None, Some(s)) => {
            let metadata = q::output_metadata(&file, &plan, imatrix.as_ref());
            let (header, alignment) = lowbit::gguf::header_size(&metadata, &q::output_specs(&plan))?;
            let padding = (alignment - 1) * plan.len() as u64;
            Some(budget::parse_size(s)?.saturating_sub(header + padding))
        }
        _ => None,
    };
    if let Some(budget_bytes) = target {
        let first_moe = q::first_moe_layer(plan.iter().map(|p| p.name.as_str()));
        let fixed: Vec<usize> = (0..plan.len())
            .filter(|&i| overrides.iter().any(|r| r.matches(&plan[i].name, first_moe)))
            .collect();
        let bar = progress_bar(0, "measuring");
        let mut sens = budget::measure(&file, &plan, &fixed, imatrix.as_ref(), a.sample_rows, |d, t| {
            bar.set_length(t as u64);
            bar.set_position(d as u64);
        })?;
        bar.finish_and_clear();
        if let Some(text_path) = &a.calibrate {
            let tokenizer = lowbit::tokenizer::Tokenizer::from_gguf(&file)?;
            let text = std::fs::read_to_string(text_path).map_err(|e| Error::io(text_path, e))?;
            let tokens = tokenizer.encode(&text, true, false)?;
            let chunks = tokens
                .chunks_exact(256)
                .take(a.calibrate_chunks)
                .map(|c| {
                    let mut c = c.to_vec();
                    if let (true, Some(b)) = (tokenizer.add_bos, tokenizer.bos) {
                        c[0] = b;
                    }
                    c
                })
                .collect();
            let dir = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
            let bar = progress_bar(0, "calibrating");
            let factors = budget::calibrate(
                &file,
                &plan,
                &mut sens,
                imatrix.as_ref(),
                &budget::Calibration { chunks },
                dir.path(),
                |d, t| {
                    bar.set_length(t as u64);
                    bar.set_position(d as u64);
                },
            )?;
            bar.finish_and_clear();
            for (kind, kld, factor) in factors {
                eprintln!("calibration: {kind:<16} KLD {kld:.5} when alone near 2.6 bpw (factor {factor:.4})");
            }
        }
        let measured: std::collections::HashSet<usize> = sens.iter().map(|s| s.index).collect();
        let other: u64 = (0..plan.len())
            .filter(|i| !measured.contains(i))
            .map(|i| plan[i].bytes())
            .sum();
        let types = budget::allocate(&sens, budget_bytes, other)?;
        for (s, ty) in sens.iter().zip(types) {
            plan[s.index].ty = ty;
        }
    }
    for p in plan.iter().filter(|p| p.ty != p.source && p.source.block_size() > 1) {
        eprintln!(
            "warning: {} is already {}; re-quantizing from its dequantized values",
            p.name,
            p.source.name()
        );
    }
    out(&report::table(&plan));
    if let Some(path) = &a.write_recipe {
        let rules: String = plan
            .iter()
            .filter(|p| p.quantizable())
            .map(|p| format!("^{}$ = {}\n", regex::escape(&p.name), p.ty.name().to_uppercase()))
            .collect();
        write_atomic(
            path,
            format!("# lowbit recipe for {}\n{rules}", a.input.display()).as_bytes(),
        )?;
    }
    if let Some(path) = &a.report {
        let title = format!("{} ({:.3} bpw)", a.input.display(), report::Summary::of(&plan).bpw());
        write_atomic(path, report::svg(&plan, &title).as_bytes())?;
    }
    if !a.dry_run {
        let out = a
            .output
            .as_deref()
            .ok_or_else(|| Error::Unsupported("an output path is needed (or --dry-run)".into()))?;
        let bar = progress_bar(plan.len(), "quantizing");
        q::quantize_file(&file, &plan, out, imatrix.as_ref(), |d, _| bar.set_position(d as u64))?;
        bar.finish_and_clear();
    }
    eprint!("{}", report::Summary::of(&plan).text());
    eprintln!("time: {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            file,
            json,
            plan,
            r1,
            ctx_size,
        } => {
            if let Some(recipe) = r1 {
                let (_, specs) =
                    lowbit::model::r1::deepseek_r1(lowbit::model::r1::N_LAYER, lowbit::model::r1::DENSE_LEAD);
                let planned = lowbit::quantize::plan_specs(&specs, &lowbit::quantize::Recipe::load(&recipe)?);
                out(&format!("DeepSeek-R1 (671B, 61 layers) as {recipe}:\n"));
                out(&lowbit::quantize::report::Summary::of(&planned).text());
                let cache = lowbit::model::r1::N_LAYER * lowbit::model::r1::CACHE_WIDTH;
                out(&lowbit::inspect::memory_plan(&planned, cache, ctx_size));
                return Ok(());
            }
            let file = file.expect("clap requires a file without --r1");
            let model = File::open(&file)?;
            if plan {
                let planned = lowbit::quantize::plan(&model, &lowbit::quantize::Recipe::default());
                let cache = lowbit::inspect::cache_values_per_token(&model)?;
                out(&lowbit::inspect::memory_plan(&planned, cache, ctx_size));
                return Ok(());
            }
            let text = if json {
                serde_json::to_string_pretty(&lowbit::inspect::to_json(&model)).expect("JSON values always serialize")
            } else {
                lowbit::inspect::report(&model)
            };
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`lowbit inspect … | head`) is not an error worth reporting.
            let _ = writeln!(stdout, "{text}");
            Ok(())
        }
        Command::Dequant { file, tensor, output } => {
            let model = File::open(&file)?;
            let values = model.tensor(&tensor)?.dequantize()?;
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
            let io = |e| Error::io(&output, e);
            tmp.write_all(bytes).map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(&output).map_err(|e| Error::io(&output, e.error))?;
            eprintln!("{tensor}: {} values -> {}", values.len(), output.display());
            Ok(())
        }
        Command::Bench(Bench::Kernels {
            shapes,
            formats,
            cols,
            routed,
            matmul_cols,
            iters,
            copy_mib,
            csv,
        }) => bench_kernels(
            &shapes,
            &formats,
            (&cols, routed, &matmul_cols),
            iters,
            copy_mib,
            csv.as_deref(),
        ),
        Command::Bench(Bench::Adapter { require_gpu }) => bench_adapter(require_gpu),
        Command::Bench(Bench::Stream {
            model,
            file,
            backend,
            budgets,
            ram_budget,
            page_cache,
            tokens,
            warmup,
            json,
            plot,
        }) => {
            use lowbit::stream::{report, sweep};
            if let Some(b) = budgets.iter().find(|b| !(**b > 0.0 && **b <= 1.0)) {
                return Err(Error::Budget(format!("--budgets: {b} is not a fraction in (0, 1]")));
            }
            let options = sweep::SweepOptions {
                input: file.as_deref().map_or(sweep::Input::Greedy, sweep::Input::Text),
                budgets: if ram_budget.is_empty() {
                    sweep::Budgets::Vram(budgets)
                } else {
                    sweep::Budgets::Ram(ram_budget)
                },
                n_tokens: tokens,
                warmup,
                page_cache,
            };
            let progress = |r: &sweep::Row| eprintln!("{:.3} {}: hit rate {:.3}", r.budget, r.policy, r.hit_rate);
            let result = match backend {
                BackendChoice::Cpu | BackendChoice::Auto => {
                    sweep::sweep(&model, &options, || lowbit::cpu::CpuBackend::fast(0), progress)
                }
                BackendChoice::CpuRef => {
                    sweep::sweep(&model, &options, || Ok(lowbit::cpu::CpuBackend::default()), progress)
                }
                BackendChoice::Gpu => {
                    let gpu = lowbit::gpu::GpuOptions::from_env()?;
                    sweep::sweep(&model, &options, || lowbit::gpu::GpuBackend::new(gpu.clone()), progress)
                }
            }?;
            if let Some(path) = &plot {
                write_atomic(path, report::svg(&result.rows).as_bytes())?;
            }
            out(&if json {
                report::json(&result) + "\n"
            } else {
                report::table(&result)
            });
            Ok(())
        }
        Command::Quantize(args) => quantize(args),
        Command::Synth {
            like,
            layers,
            dense_layers,
            recipe,
            seed,
            output,
        } => {
            let options = lowbit::synth::SynthOptions {
                like,
                layers,
                dense_layers,
                recipe,
                seed,
            };
            let t = std::time::Instant::now();
            let s = lowbit::synth::synth(&output, &options, lowbit::gguf::SplitPolicy::Single)?;
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            out(&format!(
                "wrote {} tensors, {:.2} GiB ({:.1}% routed experts) to {} in {:.1?}\n",
                s.tensors,
                gib(s.bytes),
                100.0 * s.expert_bytes as f64 / s.bytes.max(1) as f64,
                output.display(),
                t.elapsed()
            ));
            Ok(())
        }
        command => main_with_backend(Cli { command }),
    }
}

/// Keep freed memory for the next allocation instead of handing it back to the OS.
/// glibc serves an allocation of more than 128 KiB (at first) with its own mmap and
/// unmaps it when freed, and trims the heap's free top: every prefill's temporaries (a
/// few MB per operation) were then faulted in again page by page, 13% of a prefill's
/// time on the fixture. llama.cpp avoids the same with one compute buffer for the graph.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; it is called before any
    // thread is started. 32 MiB is glibc's largest mmap threshold on 64-bit targets.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
