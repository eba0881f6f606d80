/**
 * Commands and events of the EVOLVE backend (Tauri commands and `evolve serve`, see docs/api.md).
 * Names and fields are snake_case exactly as the Rust side serialises them.
 */
import { transport } from "./transport";

// Generated from the Rust types by ts-rs (`cargo test export_bindings`; scripts/build-ui.sh
// --test regenerates them and fails when the checked-in ones are stale).
import type { AdapterCheck } from "./bindings/AdapterCheck";
import type { ChatEvent } from "./bindings/ChatEvent";
import type { ChatStarted } from "./bindings/ChatStarted";
import type { ChatSummary } from "./bindings/ChatSummary";
import type { Dataset } from "./bindings/Dataset";
import type { DatasetImport } from "./bindings/DatasetImport";
import type { DryRun } from "./bindings/DryRun";
import type { Exported } from "./bindings/Exported";
import type { FoundModel } from "./bindings/FoundModel";
import type { Model } from "./bindings/Model";
import type { RunStateEvent } from "./bindings/RunStateEvent";
import type { RunStatus } from "./bindings/RunStatus";
import type { RunPreflight } from "./bindings/RunPreflight";
import type { RunSummary } from "./bindings/RunSummary";
import type { Status } from "./bindings/Status";
import type { AdapterInfo } from "./bindings/AdapterInfo";
import type { HistoryEntry } from "./bindings/HistoryEntry";
import type { MetricPoint } from "./bindings/MetricPoint";
import type { PairedComparison } from "./bindings/PairedComparison";
import type { PairKind } from "./bindings/PairKind";
import type { PairView } from "./bindings/PairView";
import type { RunConfig } from "./bindings/RunConfig";
import type { RunProgress } from "./bindings/RunProgress";
import type { Sampler } from "./bindings/Sampler";
import type { ScoreRow } from "./bindings/ScoreRow";
import type { Settings } from "./bindings/Settings";
import type { TrainConfig } from "./bindings/TrainConfig";
import type { WinRateCell } from "./bindings/WinRateCell";

export type {
  AdapterCheck,
  ChatEvent,
  ChatStarted,
  ChatSummary,
  Dataset,
  DatasetImport,
  DryRun,
  Exported,
  FoundModel,
  Model,
  RunStateEvent,
  RunPreflight,
  RunStatus,
  RunSummary,
  Status,
  PairedComparison,
  PairKind,
  RunConfig,
  ScoreRow,
  Settings,
  TrainConfig,
};
export type Adapter = AdapterInfo;
export type ChatMessage = HistoryEntry;
export type MetricRecord = MetricPoint;
export type Pair = PairView;
export type Progress = RunProgress;
export type SamplerConfig = Sampler;
export type WinRate = WinRateCell;

export type Variant = "base" | "adapter";
export type Scorer = "numeric" | "numeric_any" | "exact" | "pattern" | "json";
export const SCORERS: Scorer[] = ["numeric", "numeric_any", "exact", "pattern", "json"];

export interface ChatSendArgs {
  chat_id: number | null;
  model_id: number;
  adapter_id: number | null;
  message: string;
  refine_steps: number;
  scorer: Scorer | null;
  compare: boolean;
}

export type RunState = "pending" | "running" | "paused" | "done" | "failed" | "cancelled" | string;

export type RunProgressEvent = Progress;
export type RunMetricsEvent = MetricRecord;
export type Review = "pending" | "approved" | "vetoed" | "edited";

export interface PairFilter {
  run_id: number | null;
  round: number | null;
  kind: PairKind | null;
  min_margin: number | null;
  review: Review | null;
}

export type ExportFormat = "gguf_lora" | "peft" | "merged_gguf" | "trl_pairs" | "ollama" | "lm_studio";
export const EXPORT_FORMATS: { value: ExportFormat; label: string }[] = [
  { value: "gguf_lora", label: "GGUF LoRA (llama.cpp)" },
  { value: "ollama", label: "Ollama (GGUF LoRA + Modelfile)" },
  { value: "lm_studio", label: "LM Studio (merged GGUF in its models folder)" },
  { value: "peft", label: "PEFT safetensors (transformers)" },
  { value: "merged_gguf", label: "Merged GGUF model" },
  { value: "trl_pairs", label: "Preference pairs (TRL JSONL)" },
];

export type PathKind = "model" | "dataset" | "folder";

/** Every command: its arguments and its result. */
export interface Commands {
  status: [Record<string, never>, Status];
  models_list: [Record<string, never>, Model[]];
  models_add: [{ path: string; name?: string }, Model];
  models_use_builtin: [Record<string, never>, Model];
  models_fetch: [{ name: string }, Model];
  models_discover: [Record<string, never>, FoundModel[]];
  models_set_format: [{ id: number; format: string | null }, Model];
  datasets_list: [Record<string, never>, Dataset[]];
  datasets_import: [{ path: string; format: string | null; name: string | null }, DatasetImport];
  chat_send: [ChatSendArgs, ChatStarted];
  chat_cancel: [{ request_id: string }, unknown];
  chats_list: [Record<string, never>, ChatSummary[]];
  chat_history: [{ chat_id: number }, ChatMessage[]];
  runs_list: [Record<string, never>, RunSummary[]];
  run_defaults: [{ model_id?: number }, RunConfig];
  run_preflight: [{ model_id: number; config: RunConfig }, RunPreflight];
  run_dry_run: [{ model_id: number; dataset_id: number; config: RunConfig }, DryRun];
  run_start: [{ name: string; model_id: number; dataset_id: number; config: RunConfig }, { run_id: number }];
  run_pause: [{ run_id: number }, unknown];
  run_resume: [{ run_id: number }, unknown];
  run_cancel: [{ run_id: number }, unknown];
  run_status: [{ run_id: number }, RunStatus];
  run_metrics: [{ run_id: number; since: number }, MetricRecord[]];
  pairs_list: [PairFilter, Pair[]];
  pair_review: [{ pair_id: number; action: "approve" | "veto" | "edit" | "reset"; text: string | null }, Pair];
  adapters_list: [Record<string, never>, Adapter[]];
  adapter_export: [{ adapter_id: number; format: ExportFormat; dir: string; overwrite?: boolean }, Exported];
  adapter_check: [{ adapter_id: number }, AdapterCheck];
  settings_get: [Record<string, never>, Settings];
  settings_set: [{ settings: Settings }, Settings];
  pick_path: [{ kind: PathKind }, string | null];
}

/** Every event and its payload. */
export interface Events {
  chat: ChatEvent;
  run_progress: RunProgressEvent;
  run_metrics: RunMetricsEvent;
  run_state: RunStateEvent;
}

type NoArgs = Record<string, never>;

/** Typed `invoke`: `call("run_status", { run_id: 3 })`. */
export function call<K extends keyof Commands>(
  cmd: K,
  ...args: Commands[K][0] extends NoArgs ? [] : [Commands[K][0]]
): Promise<Commands[K][1]> {
  return transport().invoke<Commands[K][1]>(cmd, args[0] ?? {});
}

/** Typed `listen`. */
export function on<K extends keyof Events>(event: K, cb: (payload: Events[K]) => void): Promise<() => void> {
  return transport().listen<Events[K]>(event, cb);
}

/** The TRL metric names the run page plots. */
export const METRICS = {
  loss: "loss",
  margins: "rewards/margins",
  accuracies: "rewards/accuracies",
  chosen: "rewards/chosen",
  rejected: "rewards/rejected",
  gradNorm: "grad_norm",
  lr: "learning_rate",
  tps: "tokens_per_second",
} as const;
