//! The library API inside a host application: lowbit on the host's own `wgpu::Device`
//! beside the host's render pass (both give correct output; tokens equal the exact CPU
//! reference's), the host's validation errors neither captured nor hidden by lowbit,
//! steps recorded into the host's encoder, two sessions of one model on two threads,
//! and a device whose limits are too low refused with the missing limits listed.

mod common;
use common::fixture_path;
use lowbit::engine::{Budget, Engine, LoadOptions, Model, SamplerConfig, Step};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const MODEL: &str = "tiny-moe-Q8_0.gguf";
const PROMPT: &str = "It was a truth universally acknowledged";
const TOKENS: usize = 6;

fn greedy() -> SamplerConfig {
    SamplerConfig {
        temp: 0.0,
        repeat_penalty: 1.0,
        ..SamplerConfig::default()
    }
}

/// A device and queue as a host application makes them: WebGPU's default limits, no
/// optional features (so lowbit's kernels run without subgroups here).
fn host_device(limits: wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device")
}

fn load(engine: &Engine) -> Model {
    let options = LoadOptions {
        n_ctx: 64,
        ..LoadOptions::default()
    };
    Model::load(engine, fixture_path(MODEL), options).unwrap()
}

/// The model on `engine` and a greedy session with the prompt queued.
fn prompted(engine: &Engine) -> (Model, lowbit::Session) {
    let model = load(engine);
    let mut session = model.session(greedy()).unwrap();
    session.set_ignore_eos(true);
    session.prompt(PROMPT).unwrap();
    (model, session)
}

/// Greedy tokens of the exact CPU reference: the oracle.
fn reference_tokens() -> Vec<u32> {
    static TOKENS_ONCE: Mutex<Option<Vec<u32>>> = Mutex::new(None);
    let mut once = TOKENS_ONCE.lock().unwrap();
    once.get_or_insert_with(|| {
        let (_model, mut s) = prompted(&Engine::cpu_reference());
        (0..TOKENS).map(|_| s.next_token().unwrap().unwrap().id).collect()
    })
    .clone()
}

/// Time any loop of steps may take: lavapipe shares two cores with the other tests.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Step `session` with `budget` until `n` tokens have come (bounded in time).
fn step_tokens(session: &mut lowbit::Session, budget: Budget, n: usize) -> Vec<u32> {
    let start = std::time::Instant::now();
    let mut ids = Vec::new();
    while start.elapsed() < PATIENCE {
        match session.step(budget).unwrap() {
            Step::Token(t) => ids.push(t.id),
            Step::Done => break,
            Step::Pending => std::thread::sleep(std::time::Duration::from_micros(200)),
        }
        if ids.len() == n {
            return ids;
        }
    }
    panic!("{} of {n} tokens after {PATIENCE:?}", ids.len());
}

const SIZE: u32 = 64;
const TRIANGLE: &str = "
@vertex fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let p = array(vec2(-0.5, -0.5), vec2(0.5, -0.5), vec2(0.0, 0.5));
    return vec4(p[i], 0.0, 1.0);
}
@fragment fn fs() -> @location(0) vec4<f32> { return vec4(1.0, 0.0, 0.0, 1.0); }
";

/// The host's frame: clear to blue, a red triangle in the middle, into `target`.
fn render(device: &wgpu::Device, queue: &wgpu::Queue, target: &wgpu::Texture, pipeline: &wgpu::RenderPipeline) {
    let view = target.create_view(&Default::default());
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLUE),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        pass.set_pipeline(pipeline);
        pass.draw(0..3, 0..1);
    }
    queue.submit([encoder.finish()]);
}

fn triangle_pipeline(device: &wgpu::Device) -> wgpu::RenderPipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host triangle"),
        source: wgpu::ShaderSource::Wgsl(TRIANGLE.into()),
    });
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("host triangle"),
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
    })
}

/// The target's pixels, RGBA8 rows of SIZE.
fn pixels(device: &wgpu::Device, queue: &wgpu::Queue, target: &wgpu::Texture) -> Vec<u8> {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host pixels"),
        size: (SIZE * SIZE * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        target.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(SIZE * 4),
                rows_per_image: None,
            },
        },
        wgpu::Extent3d {
            width: SIZE,
            height: SIZE,
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    buffer.slice(..).map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    buffer.slice(..).get_mapped_range().unwrap().to_vec()
}

fn offscreen(device: &wgpu::Device) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some("host frame"),
        size: wgpu::Extent3d {
            width: SIZE,
            height: SIZE,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    })
}

#[test]
fn one_device_renders_the_hosts_frames_and_runs_lowbits_kernels() {
    let (device, queue) = host_device(wgpu::Limits::default());
    let engine = Engine::from_device(device.clone(), queue.clone()).unwrap();
    let (_model, mut session) = prompted(&engine);
    let (target, pipeline) = (offscreen(&device), triangle_pipeline(&device));
    let (mut ids, start) = (Vec::new(), std::time::Instant::now());
    while start.elapsed() < PATIENCE {
        render(&device, &queue, &target, &pipeline);
        if let Step::Token(t) = session.step(Budget::Layers(1)).unwrap() {
            ids.push(t.id);
        }
        if ids.len() == TOKENS {
            break;
        }
    }
    assert_eq!(ids, reference_tokens(), "lowbit's tokens on the host's device");
    let px = pixels(&device, &queue, &target);
    let at = |x: u32, y: u32| &px[((y * SIZE + x) * 4) as usize..][..4];
    assert_eq!(at(SIZE / 2, SIZE / 2), [255, 0, 0, 255], "the triangle");
    assert_eq!(at(1, 1), [0, 0, 255, 255], "the clear colour");
}

#[test]
fn the_hosts_validation_errors_are_neither_captured_nor_hidden() {
    let (device, queue) = host_device(wgpu::Limits::default());
    let uncaptured = Arc::new(AtomicUsize::new(0));
    let count = uncaptured.clone();
    device.on_uncaptured_error(Arc::new(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    let engine = Engine::from_device(device.clone(), queue.clone()).unwrap();
    let (_model, mut session) = prompted(&engine);
    // A copy from a buffer without COPY_SRC: a validation error of the host's.
    let not_a_source = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host buffer"),
        size: 16,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let host_error = || {
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&not_a_source, 0, &not_a_source, 0, 16);
        queue.submit([encoder.finish()]);
    };
    // The host's own scope around a lowbit step and its error: the error is the host's.
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    assert!(session.step(Budget::Layers(1)).is_ok(), "lowbit's step");
    host_error();
    let caught = pollster::block_on(scope.pop());
    assert!(caught.is_some(), "the host's scope holds the host's error");
    // Without a scope, the host's error reaches the host's handler (wgpu reports it at
    // the encoder's finish and at the submit), alone and between lowbit steps alike.
    assert_eq!(uncaptured.load(Ordering::SeqCst), 0);
    host_error();
    let alone = uncaptured.load(Ordering::SeqCst);
    assert!(alone > 0, "the host's handler saw its error");
    let ids_before = step_tokens(&mut session, Budget::Layers(2), 2);
    host_error();
    let ids_after = step_tokens(&mut session, Budget::Layers(2), TOKENS - 2);
    assert_eq!(
        uncaptured.load(Ordering::SeqCst),
        2 * alone,
        "the host's handler saw all of it"
    );
    assert_eq!([ids_before, ids_after].concat(), reference_tokens());
}

#[test]
fn steps_recorded_into_the_hosts_encoder_give_the_same_tokens() {
    let (device, queue) = host_device(wgpu::Limits::default());
    let engine = Engine::from_device(device.clone(), queue.clone()).unwrap();
    let (_model, mut session) = prompted(&engine);
    // The MoE prompt pass groups its pairs by expert on the host, so it runs on
    // lowbit's own submissions; one-token passes need no host read.
    let mut ids = step_tokens(&mut session, Budget::Token, 1);
    let (target, pipeline) = (offscreen(&device), triangle_pipeline(&device));
    let start = std::time::Instant::now();
    while start.elapsed() < PATIENCE {
        render(&device, &queue, &target, &pipeline);
        let mut encoder = device.create_command_encoder(&Default::default());
        let step = session.step_into(&mut encoder, Budget::Layers(3)).unwrap();
        queue.submit([encoder.finish()]);
        if let Step::Token(t) = step {
            ids.push(t.id);
        }
        if ids.len() == TOKENS {
            break;
        }
    }
    assert_eq!(ids, reference_tokens());
}

#[test]
fn two_sessions_of_one_model_on_two_threads() {
    for engine in [Engine::new().unwrap(), Engine::cpu(1)] {
        let model = load(&engine);
        let threads: Vec<_> = [Budget::Layers(1), Budget::Token]
            .into_iter()
            .map(|budget| {
                let model = model.clone();
                std::thread::spawn(move || {
                    let mut s = model.session(greedy()).unwrap();
                    s.set_ignore_eos(true);
                    s.prompt(PROMPT).unwrap();
                    step_tokens(&mut s, budget, TOKENS)
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), reference_tokens());
        }
    }
}

#[test]
fn a_device_below_lowbits_limits_is_refused_with_what_it_lacks() {
    let (device, queue) = host_device(wgpu::Limits::downlevel_webgl2_defaults());
    let err = Engine::from_device(device, queue).err().expect("refused").to_string();
    assert!(
        err.contains("max_storage_buffers_per_shader_stage is 0, lowbit needs 8"),
        "{err}"
    );
    assert!(err.contains("max_compute_invocations_per_workgroup"), "{err}");
}

#[test]
fn misuse_is_an_error() {
    let model = load(&Engine::cpu(1));
    let mut s = model.session(greedy()).unwrap();
    assert!(s.step(Budget::Token).is_err(), "a step before any prompt");
    assert!(s.prompt_tokens(&[]).is_err(), "an empty prompt");
    assert!(s.prompt_tokens(&[u32::MAX]).is_ok(), "queued");
    assert!(s.step(Budget::Token).is_err(), "a token outside the vocabulary");
    let mut encoder_less = model.session(greedy()).unwrap();
    assert!(Model::load(&Engine::cpu(1), "/nonexistent.gguf", LoadOptions::default()).is_err());
    encoder_less.prompt(PROMPT).unwrap();
    assert!(matches!(encoder_less.next_token(), Ok(Some(_))));
}
