package sdxl

import "github.com/diagd/diagd/internal/half"

// f32ToF16 converts to IEEE half precision with round-to-nearest-even (internal/half).
func f32ToF16(f float32) uint16 { return half.FromFloat32(f) }

// f16ToF32 widens a half-precision value exactly.
func f16ToF32(h uint16) float32 { return half.ToFloat32(h) }
