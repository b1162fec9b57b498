// Package augment makes synthetic defect images for training the detector: it plans
// each image (which good "negative" image, which defect kind by weight, which prompt,
// which mask: a technician's defect shape or a random shape drawn inside a region
// mask), hands the job to a Generator (DIAG's SDXL inpainting, or the weight-free
// MemSeg baseline), and writes image, mask and a JSON sidecar per output, atomically,
// with a contact sheet and a summary of what was skipped and why.
package augment
