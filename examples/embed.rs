//! lowbit inside a renderer: a small wgpu application that renders frames to an
//! offscreen texture (a clear and a textured quad) and advances a generation session a
//! bounded amount each frame, on the same device. It prints each frame's time and the
//! tokens so far, then the worst and median frame time against a frames-only run.
//!
//! ```sh
//! cargo run --release --example embed -- [MODEL.gguf] [--layers N] [--tokens N] [--frames N]
//! ```
//!
//! A frame's time is from the start of its recording until the device has finished it
//! (the host waits for its own submission only). lowbit's step follows the frame's
//! work on the queue, so the next frame also waits for one step of device work: the
//! bound the report checks is the frames-only worst frame plus the slowest step
//! allowed (`--bound-ms`, 25 ms by default, measured on lavapipe in BENCHMARKS.md).
//! It exits with an error when the bound is broken or generation does not finish.

use lowbit::engine::{Budget, Engine, LoadOptions, Model, SamplerConfig, Step};
use std::time::{Duration, Instant};

const SIZE: u32 = 256;
const PROMPT: &str = "The capital of France is";
const QUAD: &str = "
struct Out { @builtin(position) pos: vec4<f32>, @location(0) uv: vec2<f32> }
@vertex fn vs(@builtin(vertex_index) i: u32) -> Out {
    let c = array(vec2(0.0, 0.0), vec2(1.0, 0.0), vec2(0.0, 1.0), vec2(1.0, 1.0), vec2(0.0, 1.0), vec2(1.0, 0.0));
    return Out(vec4(c[i] * 1.5 - 0.75, 0.0, 1.0), c[i]);
}
@group(0) @binding(0) var tex: texture_2d<f32>;
@group(0) @binding(1) var smp: sampler;
@fragment fn fs(v: Out) -> @location(0) vec4<f32> { return textureSample(tex, smp, v.uv); }
";

struct Args {
    model: String,
    layers: usize,
    tokens: usize,
    frames: usize,
    bound_ms: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: "models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        layers: 1,
        tokens: 16,
        frames: 120,
        bound_ms: 150.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--layers" => args.layers = value("--layers")?.parse().map_err(|e| format!("--layers: {e}"))?,
            "--tokens" => args.tokens = value("--tokens")?.parse().map_err(|e| format!("--tokens: {e}"))?,
            "--frames" => args.frames = value("--frames")?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--bound-ms" => args.bound_ms = value("--bound-ms")?.parse().map_err(|e| format!("--bound-ms: {e}"))?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            path => args.model = path.into(),
        }
    }
    Ok(args)
}

/// The host's renderer: an offscreen target and a textured quad.
struct Renderer {
    target: wgpu::TextureView,
    pipeline: wgpu::RenderPipeline,
    bind: wgpu::BindGroup,
}

impl Renderer {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let texture = |size: u32, usage| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: None,
                size: wgpu::Extent3d {
                    width: size,
                    height: size,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8Unorm,
                usage,
                view_formats: &[],
            })
        };
        let target = texture(SIZE, wgpu::TextureUsages::RENDER_ATTACHMENT).create_view(&Default::default());
        let checker = texture(8, wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST);
        let texels: Vec<u8> = (0..64u32)
            .flat_map(|i| match (i % 8 + i / 8) % 2 {
                0 => [230, 160, 40, 255],
                _ => [30, 30, 60, 255],
            })
            .collect();
        queue.write_texture(
            checker.as_image_copy(),
            &texels,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(8 * 4),
                rows_per_image: None,
            },
            checker.size(),
        );
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("quad"),
            source: wgpu::ShaderSource::Wgsl(QUAD.into()),
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("quad"),
            layout: None,
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::TextureFormat::Rgba8Unorm.into())],
            }),
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            multiview_mask: None,
            cache: None,
        });
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("quad"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&checker.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Sampler(&device.create_sampler(&Default::default())),
                },
            ],
        });
        Renderer { target, pipeline, bind }
    }

    /// Record and submit one frame: a clear and the quad.
    fn frame(&self, device: &wgpu::Device, queue: &wgpu::Queue) -> wgpu::SubmissionIndex {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &self.target,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind, &[]);
            pass.draw(0..6, 0..1);
        }
        queue.submit([encoder.finish()])
    }
}

/// Wait for the host's own submission only.
fn finish(device: &wgpu::Device, index: wgpu::SubmissionIndex) -> Result<(), String> {
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(Duration::from_secs(10)),
        })
        .map(|_| ())
        .map_err(|e| format!("waiting for a frame: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, worst) in ms.
fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    (ms(times[times.len() / 2]), ms(*times.last().unwrap_or(&Duration::ZERO)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    println!("adapter: {}", adapter.get_info().name);
    let renderer = Renderer::new(&device, &queue);

    // The first frames compile and warm the host's pipeline: not measured.
    for _ in 0..10 {
        finish(&device, renderer.frame(&device, &queue))?;
    }
    let mut frames_only = Vec::with_capacity(args.frames);
    for _ in 0..args.frames {
        let start = Instant::now();
        finish(&device, renderer.frame(&device, &queue))?;
        frames_only.push(start.elapsed());
    }

    let engine = Engine::from_device(device.clone(), queue.clone())?;
    let model = Model::load(&engine, &args.model, LoadOptions::default())?;
    let greedy = SamplerConfig {
        temp: 0.0,
        repeat_penalty: 1.0,
        ..SamplerConfig::default()
    };
    let mut session = model.session(greedy)?;
    // Pipelines compile on first use: the prompt and two tokens before the frames
    // (the same shapes), then forget them.
    session.prompt(PROMPT)?;
    for _ in 0..2 {
        session.next_token()?;
    }
    session.reset();

    session.prompt(PROMPT)?;
    let (mut generating, mut tokens, mut text) = (Vec::new(), 0, String::new());
    let mut done = false;
    for frame in 0..100_000 {
        let start = Instant::now();
        let index = renderer.frame(&device, &queue);
        match session.step(Budget::Layers(args.layers))? {
            Step::Token(t) => {
                tokens += 1;
                text.push_str(&t.text);
            }
            Step::Pending => {}
            Step::Done => done = true,
        }
        finish(&device, index)?;
        let time = start.elapsed();
        generating.push(time);
        println!("frame {frame}: {:.2} ms, {tokens} tokens", ms(time));
        if done || tokens == args.tokens {
            break;
        }
    }
    let (only_median, only_worst) = summary(&mut frames_only);
    let (gen_median, gen_worst) = summary(&mut generating);
    let bound = only_worst + args.bound_ms;
    println!("text: {text:?}");
    println!(
        "frames only: {} frames, median {only_median:.2} ms, worst {only_worst:.2} ms",
        frames_only.len()
    );
    println!(
        "generating ({} layer(s) per frame): {} frames, {tokens} tokens, median {gen_median:.2} ms, worst {gen_worst:.2} ms (bound {bound:.2} ms)",
        args.layers,
        generating.len()
    );
    if tokens < args.tokens && !done {
        return Err("generation did not finish".into());
    }
    if gen_worst > bound {
        return Err(format!("the worst frame, {gen_worst:.2} ms, is past the bound of {bound:.2} ms").into());
    }
    Ok(())
}
