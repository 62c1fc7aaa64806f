//! DeepSeek-R1's real GGUF layout (llama.cpp's `deepseek2` names and shapes, MLA split
//! `attn_k_b`/`attn_v_b`, BF16 weights, F32 norms/router/bias), for planning memory
//! without the 671B download and for scale tests with a few layers.

use crate::gguf::{TensorSpec, Value};
use crate::quant::BlockType;

/// R1's dimensions.
pub const N_LAYER: usize = 61;
pub const DENSE_LEAD: usize = 3;
const N_EMBD: u64 = 7168;
const N_FF: u64 = 18432;
const N_HEAD: u64 = 128;
const Q_LORA: u64 = 1536;
const KV_LORA: u64 = 512;
const QK_NOPE: u64 = 128;
const QK_ROPE: u64 = 64;
const V_HEAD: u64 = 128;
const N_EXPERT: u64 = 256;
const EXPERT_FF: u64 = 2048;
const N_VOCAB: u64 = 129280;

/// Latent cache values per token per layer (kv_lora + qk_rope).
pub const CACHE_WIDTH: usize = (KV_LORA + QK_ROPE) as usize;

/// Metadata and tensor table of R1 cut to `n_layer` layers, the first `dense_lead` dense
/// (no tokenizer: its 129,280-entry vocabulary is not reproduced).
pub fn deepseek_r1(n_layer: usize, dense_lead: usize) -> (Vec<(String, Value)>, Vec<TensorSpec>) {
    let k = |s: &str| format!("deepseek2.{s}");
    let u = |v: u64| Value::U32(v as u32);
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("deepseek2".into())),
        ("general.name".to_string(), Value::String("DeepSeek-R1 (layout)".into())),
        (k("block_count"), u(n_layer as u64)),
        (k("context_length"), u(163840)),
        (k("embedding_length"), u(N_EMBD)),
        (k("feed_forward_length"), u(N_FF)),
        (k("attention.head_count"), u(N_HEAD)),
        (k("attention.head_count_kv"), u(1)),
        (k("rope.freq_base"), Value::F32(10000.0)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (k("expert_used_count"), u(8)),
        (k("leading_dense_block_count"), u(dense_lead as u64)),
        (k("vocab_size"), u(N_VOCAB)),
        (k("attention.q_lora_rank"), u(Q_LORA)),
        (k("attention.kv_lora_rank"), u(KV_LORA)),
        (k("attention.key_length"), u(KV_LORA + QK_ROPE)),
        (k("attention.value_length"), u(KV_LORA)),
        (k("attention.key_length_mla"), u(QK_NOPE + QK_ROPE)),
        (k("attention.value_length_mla"), u(V_HEAD)),
        (k("expert_feed_forward_length"), u(EXPERT_FF)),
        (k("expert_count"), u(N_EXPERT)),
        (k("expert_shared_count"), u(1)),
        (k("expert_weights_scale"), Value::F32(2.5)),
        (k("expert_weights_norm"), Value::Bool(true)),
        (k("expert_gating_func"), u(2)),
        (k("expert_group_count"), u(8)),
        (k("expert_group_used_count"), u(4)),
        (k("rope.dimension_count"), u(QK_ROPE)),
        (k("rope.scaling.type"), Value::String("yarn".into())),
        (k("rope.scaling.factor"), Value::F32(40.0)),
        (k("rope.scaling.original_context_length"), u(4096)),
        (k("rope.scaling.yarn_log_multiplier"), Value::F32(0.1)),
    ];
    let mut t = Vec::new();
    let mut add = |name: String, ty: BlockType, dims: &[u64]| {
        t.push(TensorSpec {
            name,
            ty,
            dims: dims.to_vec(),
        })
    };
    let w = BlockType::BF16;
    let f = BlockType::F32;
    add("token_embd.weight".into(), w, &[N_EMBD, N_VOCAB]);
    for l in 0..n_layer {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        add(n("attn_norm"), f, &[N_EMBD]);
        add(n("attn_q_a"), w, &[N_EMBD, Q_LORA]);
        add(n("attn_q_a_norm"), f, &[Q_LORA]);
        add(n("attn_q_b"), w, &[Q_LORA, N_HEAD * (QK_NOPE + QK_ROPE)]);
        add(n("attn_kv_a_mqa"), w, &[N_EMBD, KV_LORA + QK_ROPE]);
        add(n("attn_kv_a_norm"), f, &[KV_LORA]);
        add(n("attn_k_b"), w, &[QK_NOPE, KV_LORA, N_HEAD]);
        add(n("attn_v_b"), w, &[KV_LORA, V_HEAD, N_HEAD]);
        add(n("attn_output"), w, &[N_HEAD * V_HEAD, N_EMBD]);
        add(n("ffn_norm"), f, &[N_EMBD]);
        if l < dense_lead {
            add(n("ffn_gate"), w, &[N_EMBD, N_FF]);
            add(n("ffn_up"), w, &[N_EMBD, N_FF]);
            add(n("ffn_down"), w, &[N_FF, N_EMBD]);
        } else {
            add(n("ffn_gate_inp"), f, &[N_EMBD, N_EXPERT]);
            add(format!("blk.{l}.exp_probs_b.bias"), f, &[N_EXPERT]);
            add(n("ffn_gate_exps"), w, &[N_EMBD, EXPERT_FF, N_EXPERT]);
            add(n("ffn_up_exps"), w, &[N_EMBD, EXPERT_FF, N_EXPERT]);
            add(n("ffn_down_exps"), w, &[EXPERT_FF, N_EMBD, N_EXPERT]);
            add(n("ffn_gate_shexp"), w, &[N_EMBD, EXPERT_FF]);
            add(n("ffn_up_shexp"), w, &[N_EMBD, EXPERT_FF]);
            add(n("ffn_down_shexp"), w, &[EXPERT_FF, N_EMBD]);
        }
    }
    add("output_norm.weight".into(), f, &[N_EMBD]);
    add("output.weight".into(), w, &[N_EMBD, N_VOCAB]);
    (metadata, t)
}
