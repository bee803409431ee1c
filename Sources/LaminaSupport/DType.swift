/// Element types of tensors.
///
/// Models use `f32`, `f64` and `i32`; `i64` exists so `.npy` and `.safetensors` files written by numpy or
/// PyTorch (whose integer default is 64-bit) can be read and converted.
public enum DType: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
  case f32
  case f64
  case i32
  case i64

  /// Size of one element in bytes.
  public var byteSize: Int {
    switch self {
    case .f32, .i32: 4
    case .f64, .i64: 8
    }
  }

  public var isFloatingPoint: Bool { self == .f32 || self == .f64 }
  public var isInteger: Bool { !isFloatingPoint }

  public var description: String { rawValue }
}
