// Package segdec is a compact segmentation + decision network for surface defects,
// trained from random weights (Tabernik et al., J. Intell. Manuf. 2020; Božič et al.,
// Computers in Industry 2021, "mixed supervision"), generated as ONNX in Go with the
// detector interface detect serves, and the mask-side helpers its training needs.
//
// # The network
//
// Options.Build writes the graph: input [batch,3,H,W] → logit [batch,1], features
// [batch,2·D+2] and segmentation [batch,1,H/8,W/8], a per-pixel defect logit.
//
//   - Segmentation sub-network: three stages of Conv+BatchNorm+ReLU, each with a 2×
//     downsampling (a max-pooling after it, as published, or with Strided a stride-2
//     first convolution), then a wide block at 1/8 (Options.Wide) and a 1×1 convolution
//     to the segmentation logit.
//   - Decision sub-network: it reads the wide block's features concatenated with the
//     segmentation logit, three more downsampling convolutions (Options.Decision), then
//     global max and average pooling of its features and of the segmentation logit: the
//     features output (D = Decision[2]), and one fully connected layer to the logit.
//
// Parameter names start with SegPrefix or DecPrefix (Trainable selects either part);
// BatchNorm running statistics end in .running_mean and .running_var. Every operator
// has a backward rule in retrain/autodiff (a test builds the training step of each
// default).
//
// CPUOptions (the default; 640×232 RGB, KolektorSDD2's size; 24-48-96 channels, a wide
// block of 192 with a 5×5 kernel, stride-2 downsampling) is sized for a 2-core box;
// GPUOptions is the published network (32-64-64 channels with 5×5 kernels, a wide block
// of 1024 with 15×15, max-pooling). Metadata gives model.json: architecture "segdec",
// outputs logit, features and segmentation, input normalised as x/255 around 0.5.
//
// # Masks
//
// MaskTargets turns a mask (defect > 0.5) into the pixel targets and weights of one
// image at the segmentation size: DownsampleMask (MaxPool by default, so thin scratches
// stay visible at 1/8; Area gives soft targets) and DistanceWeights, the paper's weights
// Max·(D/Dmax)^P on defect pixels (D the Euclidean distance to the background, Dmax per
// 8-connected region; PaperWeighting is its KolektorSDD2 setting Max 3, P 2) and 1 on
// background. NoPixelLabels are the targets of an image labelled only as a whole (weights
// 0). Cells cover the source pixels detect.CellSpan gives, the spans detect maps regions
// back with.
//
// # Measurements
//
// go run ./bench segdec, ORT 1.24.1 CPU on this project's 2-core box (shared, load 2 to
// 3), batch 8, best of 3 (wall time); the last run, an earlier one in brackets:
//
//	forward ResNet-50 704×256 (served)          186 ms a frame (184 ms)
//	forward segdec CPUOptions 640×232 (served)   27.2 ms a frame = 0.15× ResNet-50 (21.6 ms, 0.12×)
//	step all layers, both losses, BN train       0.86 s = 3.9× its forward (0.91 s, 5.2×), peak RSS 1.2 GB
//	step all layers, both losses, BN frozen      0.91 s = 4.2× its forward (0.89 s, 5.2×)
//	the same widths with max-pooling (-maxpool): forward 0.30× ResNet-50, steps 2.1 and 2.5 s
//	training run estimate, 1,344 images × 50 epochs: 2.1 h at these wall times (max-pooling 5.9 h)
//
// The forward target (≤ 0.25× ResNet-50) holds; the step target (≤ 3.5× its forward) does
// not. The served forward runs ORT's fused NCHWc kernels with prepacked weights, while the
// training graph's convolutions take their weights as inputs (ORT's generic kernels, several
// times slower on these narrow layers) and, per -forms, the stride-2 input gradients are
// ConvTransposes at up to 6× their forward. A 3.5× step would need faster gradient forms in
// retrain/autodiff (a phase-split input gradient for stride 2), not a different network.
package segdec
