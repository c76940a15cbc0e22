"""Every absl flag of the program, grouped by concern.

Names and meanings follow the original SimCLR tf2 program so its users' command lines keep
working; defaults run the embedded Fashion-MNIST on a 2-core CPU in minutes. The paper's
ImageNet settings are flagfiles in `flags/presets/`.
"""
from absl import flags

from stages import STAGES

# --- what to run -------------------------------------------------------------------------
flags.DEFINE_enum("mode", "train", ["train", "eval", "train_then_eval", "predict", "export"],
                  "Train, evaluate checkpoints of model_dir, or both; predict: classes and "
                  "embeddings of images with the model in --model_dir; export: that model as "
                  "ONNX / LiteRT files (--export_format).")
flags.DEFINE_enum("train_mode", "pretrain", list(STAGES),
                  "Stage 1 (contrastive pretraining), 2 (fine-tuning) or 3 (distillation).")

# --- data ----------------------------------------------------------------------------------
flags.DEFINE_string("dataset", "fashion_mnist",
                    "TFDS name (e.g. imagenet2012, imagenet2012_subset/1pct, cifar10), "
                    "'fashion_mnist' (embedded, from Debian's dataset-fashion-mnist), or "
                    "'folder:/path' for your own images (class sub-folders).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Directory with manually downloaded files "
                    "(ILSVRC2012 tars, 1percent.txt, 10percent.txt).")
flags.DEFINE_bool("download", False, "Allow TFDS to download the data set.")
flags.DEFINE_bool("rescan_folder", False, "Decode every image of --dataset=folder:... again; "
                  "by default a start decodes only the files added or changed since the "
                  "folder's manifest (in data_dir/folder_manifests) was written.")
flags.DEFINE_string("train_split", "train", "Split to train on.")
flags.DEFINE_string("eval_split", None, "Split to evaluate on or predict (default: test, else "
                    "validation, else holdout: the one the data set has; predict: else its "
                    "only split).")
flags.DEFINE_float("label_fraction", 1.0, "Fraction of labelled training examples for "
                   "fine-tuning, class-balanced (e.g. 0.01, 0.1).")
flags.DEFINE_integer("labels_per_class", None, "Labelled examples per class (instead of "
                     "label_fraction).")
flags.DEFINE_integer("image_size", 32, "Input image side in pixels.")
flags.DEFINE_bool("cache_dataset", True, "Cache decoded images in memory.")
flags.DEFINE_float("color_jitter_strength", 0.5, "Colour distortion strength s "
                   "(ImageNet 1.0, CIFAR-like data 0.5).")
flags.DEFINE_bool("use_blur", None, "Gaussian blur in pretraining (default: on above 32 px).")
flags.DEFINE_float("holdout_fraction", 0.0, "Hold out this fraction of each class of "
                   "train_split for validation (same images whatever --seed; 0 = none): no "
                   "stage trains on them, labelled subsets come from the rest, and "
                   "--eval_split=holdout evaluates on them (e.g. 0.0833 = 500 per class of "
                   "Fashion-MNIST).")
flags.DEFINE_string("crop_area_range", "0.08,1.0", "low,high: area of the random resized "
                    "crop as a fraction of the image, for every training crop.")
flags.DEFINE_enum("color_distortion", "auto", ["auto", "rgb", "gray", "none"],
                  "Pretraining colour distortion: rgb = SimCLR's (jitter + greyscale), gray = "
                  "brightness, contrast and gamma (what acts on single-channel images), auto = "
                  "gray for single-channel data sets, rgb otherwise.")

# --- model ---------------------------------------------------------------------------------
flags.DEFINE_integer("resnet_depth", 18, "ResNet depth: 18, 34, 50, 101, 152, 200.")
flags.DEFINE_float("width_multiplier", 0.5, "ResNet width multiplier (paper: 1, 2, 3; the "
                  "default 0.5 keeps the embedded CPU pretraining near 10 minutes).")
flags.DEFINE_float("sk_ratio", 0.0, "Selective-kernel ratio; 0 = off (paper: 0.0625).")
flags.DEFINE_float("se_ratio", 0.0, "Squeeze-excitation ratio; 0 = off.")
flags.DEFINE_enum("proj_head_mode", "nonlinear", ["none", "linear", "nonlinear"],
                  "Projection head type.")
flags.DEFINE_integer("num_proj_layers", 3, "Layers of the nonlinear projection head.")
flags.DEFINE_integer("proj_out_dim", 128, "Projection output width.")
flags.DEFINE_integer("ft_proj_selector", 0, "Head layer to fine-tune from: 0 = encoder output, "
                     "1 = first head layer (SimCLRv2 1%/10%), -1 = last.")
flags.DEFINE_bool("global_bn", True, "Batch statistics over all replicas.")
flags.DEFINE_float("batch_norm_decay", 0.9, "Batch-norm moving-average decay.")

# --- objective -----------------------------------------------------------------------------
flags.DEFINE_float("temperature", 0.1, "NT-Xent temperature (pretrain) or distillation "
                   "temperature (distill: paper 0.1 self, 1.0 big-to-small).")
flags.DEFINE_bool("hidden_norm", True, "L2-normalise projections in NT-Xent.")
flags.DEFINE_integer("memory_size", 0, "MoCo-style memory of negatives K (paper: 65536); "
                     "0 = off.")
flags.DEFINE_float("memory_ema_decay", 0.999, "EMA decay of the memory encoder.")
flags.DEFINE_bool("lineareval_while_pretraining", True, "Train a linear head on stop-gradient "
                  "features while pretraining.")

# --- optimisation --------------------------------------------------------------------------
flags.DEFINE_enum("optimizer", "lars", ["lars", "momentum", "adam"], "Optimizer.")
flags.DEFINE_float("learning_rate", 0.3, "Base learning rate (scaled by the batch size).")
flags.DEFINE_enum("learning_rate_scaling", "linear", ["linear", "sqrt"],
                  "lr * B/256 (linear) or lr * sqrt(B) (sqrt).")
flags.DEFINE_float("warmup_epochs", 10, "Linear warm-up epochs.")
flags.DEFINE_float("weight_decay", 1e-6, "Weight decay.")
flags.DEFINE_float("momentum", 0.9, "Momentum.")
flags.DEFINE_integer("train_batch_size", 256, "Global training batch.")
flags.DEFINE_float("train_epochs", 1, "Training epochs.")
flags.DEFINE_integer("train_steps", 0, "Training steps; overrides train_epochs when > 0.")
flags.DEFINE_integer("steps_per_loop", 10, "Steps inside one compiled loop call.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling and augmentation.")
flags.DEFINE_bool("deterministic", False, "Deterministic TensorFlow ops (slower): the same seed "
                  "gives the same weights, also across an interruption and resume.")

# --- evaluation ----------------------------------------------------------------------------
flags.DEFINE_integer("eval_batch_size", 256, "Evaluation batch.")
flags.DEFINE_integer("eval_steps", 0, "Evaluation steps; 0 = the whole split.")
flags.DEFINE_integer("eval_timeout", 600, "mode=eval: seconds to wait for the next checkpoint "
                     "in model_dir before giving up (0 = do not wait).")

# --- using a trained model (--mode=predict, --mode=export) -------------------------------------
flags.DEFINE_string("output_dir", None, "predict / export: where the files go (default: "
                    "runs/predict, runs/export).")
flags.DEFINE_integer("top_k", 5, "predict: classes (with their probabilities) per image.")
flags.DEFINE_string("embedding_layer", "final_avg_pool", "predict / export: the layer whose "
                    "output is the embedding: final_avg_pool, proj_head_input, "
                    "proj_head_layer_<j> (j-th projection-head layer), proj_head_output, "
                    "logits_sup.")
flags.DEFINE_bool("normalize_embeddings", False, "predict: L2-normalise each embedding.")
flags.DEFINE_bool("overwrite", False, "predict / export: replace output files that exist.")
flags.DEFINE_list("export_format", None, "export: onnx, litert, or both (onnx,litert).")

# --- online kNN monitor ----------------------------------------------------------------------
flags.DEFINE_integer("knn_every_steps", 0, "Every N steps, cosine kNN top-1 of final_avg_pool "
                     "features (labelled bank vs held-out images), TensorBoard knn/top1 and a "
                     "progress line; 0 = off.")
flags.DEFINE_integer("knn_k", 20, "Neighbours of the kNN monitor.")
flags.DEFINE_float("knn_temperature", 0.07, "kNN vote weight exp(similarity / T) (InstDisc, "
                   "solo-learn); 0 = plain majority.")
flags.DEFINE_integer("knn_bank_size", 0, "Labelled training images in the kNN bank "
                     "(class-balanced); 0 = all labelled ones (kept in memory: ~12 KB each "
                     "at 32 px).")
flags.DEFINE_integer("knn_eval_examples", 0, "Held-out images the kNN monitor scores (the "
                     "holdout split if any, else eval_split); 0 = all.")

# --- checkpoints ---------------------------------------------------------------------------
flags.DEFINE_string("model_dir", None, "Where checkpoints, SavedModels and logs go "
                    "(default: runs/<train_mode>); predict / export: the model to use, a "
                    "model_dir or a SavedModel (ours or an official SimCLRv2 one).")
flags.DEFINE_string("checkpoint", None, "Warm start from a checkpoint prefix, a model_dir, "
                    "or a SavedModel (ours or an official SimCLRv2 one).")
flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints to keep.")
flags.DEFINE_integer("keep_hub_module_max", 1, "SavedModels to keep.")
flags.DEFINE_integer("checkpoint_steps", 0, "Save every N steps (rounded to steps_per_loop); "
                     "0 = use checkpoint_epochs.")
flags.DEFINE_float("checkpoint_epochs", 1, "Save every N epochs.")
flags.DEFINE_bool("from_scratch", False, "Fine-tune from random weights: the supervised "
                  "baseline on the labelled fraction (no --checkpoint).")
flags.DEFINE_bool("zero_init_logits_layer", False, "Zero-initialise the supervised head.")
flags.DEFINE_integer("fine_tune_after_block", -1, "Freeze the encoder up to this block "
                     "(-1 none, 0 stem, 1..4 block groups; 4 = linear head only).")

# --- distillation --------------------------------------------------------------------------
flags.DEFINE_string("teacher", None, "Fine-tuned teacher: a checkpoint prefix, a model_dir or "
                    "a SavedModel.")
flags.DEFINE_float("distill_alpha", 1.0, "Weight of the distillation term (Eq. 3); 1.0 = "
                   "Eq. 2, labels unused.")

# --- speed ---------------------------------------------------------------------------------
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                  "Compute precision. auto: mixed_bfloat16 where the hardware computes "
                  "bfloat16 natively (CPUs with AMX or AVX512-BF16, TPUs, GPUs of compute "
                  "capability >= 8.0), else float32. Variables, losses, softmax and BN "
                  "statistics stay float32.")
flags.DEFINE_bool("jit_compile", False, "Compile the step with XLA (on a CPU several times "
                  "slower: warns unless --jit_compile_on_cpu).")
flags.DEFINE_bool("jit_compile_on_cpu", False, "With --jit_compile on a CPU: compile anyway, "
                  "without the warning.")

# --- distribution --------------------------------------------------------------------------
flags.DEFINE_enum("distribution", "default", ["default", "one_device", "mirrored",
                                              "multi_worker", "tpu"],
                  "tf.distribute strategy; default: one device, or mirrored over local GPUs.")
flags.DEFINE_string("tpu", None, "TPU name or address (alias: tpu_name).")
flags.DEFINE_string("tpu_name", None, "TPU name (original flag name).")
flags.DEFINE_string("tpu_zone", None, "GCP zone of the TPU.")
flags.DEFINE_string("gcp_project", None, "GCP project of the TPU.")
flags.DEFINE_bool("use_tpu", False, "Original flag: same as --distribution=tpu.")

# --- summaries -----------------------------------------------------------------------------
flags.DEFINE_bool("progress_bar", None, "Live progress bar (default: when stdout is a tty).")

FLAGS = flags.FLAGS
