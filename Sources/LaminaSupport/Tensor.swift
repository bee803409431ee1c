import Foundation

/// A dense, row-major (C order) tensor with a concrete shape.
///
/// Storage is one 64-byte aligned buffer shared copy-on-write, so passing a tensor around copies nothing
/// and the bytes can be handed to compiled kernels as they are.
///
///     let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6] as [Float])
///     let values: [Float] = x.scalars()
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
  public let dtype: DType
  public let shape: [Int]
  private var storage: TensorStorage

  /// Number of elements: the product of the shape (1 for a scalar).
  public var count: Int { shape.reduce(1, *) }
  public var byteCount: Int { count * dtype.byteSize }
  public var rank: Int { shape.count }

  /// Bytes a tensor of `dtype` and `shape` takes; nil for a negative dimension or a size past `Int.max`.
  public static func byteCount(_ dtype: DType, _ shape: [Int]) -> Int? {
    var bytes = dtype.byteSize
    for dim in shape {
      guard dim >= 0 else { return nil }
      let (product, overflow) = bytes.multipliedReportingOverflow(by: dim)
      guard !overflow else { return nil }
      bytes = product
    }
    return bytes
  }

  /// Throws when a tensor of `dtype` and `shape` cannot be allocated: its size overflows, or it is
  /// larger than this machine's memory. Checked before allocating a tensor whose shape comes from a
  /// model (its outputs, its intermediates in the interpreter), which would otherwise abort the process.
  /// - Parameter what: the value, for the message (`output 'y'`).
  public static func checkAllocation(_ dtype: DType, _ shape: [Int], of what: String) throws {
    let type = "\(dtype)[\(shape.map(String.init).joined(separator: ", "))]"
    guard let bytes = byteCount(dtype, shape) else {
      throw RunError("cannot allocate \(what) \(type): its size is past 2^63 bytes")
    }
    let memory = ProcessInfo.processInfo.physicalMemory
    guard UInt64(bytes) <= memory else {
      throw RunError(
        "cannot allocate \(what) \(type): \(bytes) bytes (\(gibibytes(UInt64(bytes)))), more than this machine's memory (\(gibibytes(memory)))"
      )
    }
  }

  private static func gibibytes(_ bytes: UInt64) -> String {
    String(format: "%.1f GiB", Double(bytes) / Double(1 << 30))
  }

  /// A zero-filled tensor.
  public init(zeros dtype: DType, shape: [Int]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.dtype = dtype
    self.shape = shape
    self.storage = TensorStorage(byteCount: shape.reduce(1, *) * dtype.byteSize)
  }

  /// A tensor of the given dtype built from raw little-endian bytes; nil when the byte count is wrong.
  public init?(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
    guard shape.allSatisfy({ $0 >= 0 }), bytes.count == shape.reduce(1, *) * dtype.byteSize else {
      return nil
    }
    self.init(zeros: dtype, shape: shape)
    if let base = bytes.baseAddress, bytes.count > 0 {
      storage.pointer.copyMemory(from: base, byteCount: bytes.count)
    }
  }

  public init(shape: [Int], scalars: [Float]) {
    self.init(dtype: .f32, shape: shape, elements: scalars)
  }

  public init(shape: [Int], scalars: [Double]) {
    self.init(dtype: .f64, shape: shape, elements: scalars)
  }

  public init(shape: [Int], scalars: [Int32]) {
    self.init(dtype: .i32, shape: shape, elements: scalars)
  }

  public init(shape: [Int], scalars: [Int64]) {
    self.init(dtype: .i64, shape: shape, elements: scalars)
  }

  /// A scalar (rank 0) tensor.
  public init(scalar: Double, dtype: DType = .f32) {
    self.init(dtype: dtype, shape: [], doubles: [scalar])
  }

  private init<Element>(dtype: DType, shape: [Int], elements: [Element]) {
    precondition(
      shape.reduce(1, *) == elements.count,
      "\(elements.count) scalars do not fill shape \(shape)")
    self.init(zeros: dtype, shape: shape)
    elements.withUnsafeBytes {
      storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count)
    }
  }

  /// A tensor of `dtype` from double-precision values, rounded (or truncated, for integers) to the dtype.
  public init(dtype: DType, shape: [Int], doubles: [Double]) {
    precondition(
      shape.reduce(1, *) == doubles.count, "\(doubles.count) values do not fill \(shape)")
    self.init(zeros: dtype, shape: shape)
    let pointer = storage.pointer
    // The interpreter builds every result here: plain loops over buffers, which stay fast in debug
    // builds (where `enumerated()` and `map` cost a generic call per element).
    doubles.withUnsafeBufferPointer { values in
      let count = values.count
      var index = 0
      switch dtype {
      case .f32:
        let typed = pointer.assumingMemoryBound(to: Float.self)
        while index < count {
          typed[index] = Float(values[index])
          index += 1
        }
      case .f64:
        let typed = pointer.assumingMemoryBound(to: Double.self)
        while index < count {
          typed[index] = values[index]
          index += 1
        }
      case .i32:
        let typed = pointer.assumingMemoryBound(to: Int32.self)
        while index < count {
          typed[index] = Int32(clamping: Int(exactly: values[index].rounded(.towardZero)) ?? 0)
          index += 1
        }
      case .i64:
        let typed = pointer.assumingMemoryBound(to: Int64.self)
        while index < count {
          typed[index] = Int64(exactly: values[index].rounded(.towardZero)) ?? 0
          index += 1
        }
      }
    }
  }

  /// The elements as `Element`, which must match the dtype's size and kind.
  public func scalars<Element: TensorElement>(as type: Element.Type = Element.self) -> [Element] {
    precondition(Element.dtype == dtype, "tensor is \(dtype), not \(Element.dtype)")
    let typed = storage.pointer.assumingMemoryBound(to: Element.self)
    return Array(UnsafeBufferPointer(start: typed, count: count))
  }

  /// Every element converted to `Double`; the interpreter computes in this form.
  public func doubles() -> [Double] {
    let pointer = storage.pointer
    let n = count
    if dtype == .f64 {
      return Array(
        UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: Double.self), count: n))
    }
    // A plain loop, not `map`: the interpreter converts every operand, and debug builds pay a
    // generic call per element for `map`.
    return [Double](unsafeUninitializedCapacity: n) { buffer, initialized in
      var index = 0
      switch dtype {
      case .f32:
        let typed = pointer.assumingMemoryBound(to: Float.self)
        while index < n {
          buffer[index] = Double(typed[index])
          index += 1
        }
      case .i32:
        let typed = pointer.assumingMemoryBound(to: Int32.self)
        while index < n {
          buffer[index] = Double(typed[index])
          index += 1
        }
      case .i64:
        let typed = pointer.assumingMemoryBound(to: Int64.self)
        while index < n {
          buffer[index] = Double(typed[index])
          index += 1
        }
      case .f64:
        break
      }
      initialized = index
    }
  }

  /// The same data converted to another dtype.
  public func converted(to newType: DType) -> Tensor {
    if newType == dtype { return self }
    return Tensor(dtype: newType, shape: shape, doubles: doubles())
  }

  /// The same elements viewed with another shape of equal element count; no copy.
  public func reshaped(_ newShape: [Int]) -> Tensor? {
    guard newShape.allSatisfy({ $0 >= 0 }), newShape.reduce(1, *) == count else { return nil }
    var copy = self
    copy.shapeStorage = newShape
    return copy
  }

  private var shapeStorage: [Int] {
    get { shape }
    set { self = Tensor(dtype: dtype, shape: newValue, sharing: storage) }
  }

  private init(dtype: DType, shape: [Int], sharing storage: TensorStorage) {
    self.dtype = dtype
    self.shape = shape
    self.storage = storage
  }

  /// Read-only access to the raw bytes, valid only inside `body`.
  public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows
    -> Result
  {
    try body(UnsafeRawBufferPointer(start: storage.pointer, count: byteCount))
  }

  /// Mutable access to the raw bytes, copying first if the storage is shared.
  public mutating func withUnsafeMutableBytes<Result>(
    _ body: (UnsafeMutableRawBufferPointer) throws -> Result
  ) rethrows -> Result {
    if !isKnownUniquelyReferenced(&storage) {
      let copy = TensorStorage(byteCount: storage.byteCount)
      copy.pointer.copyMemory(from: storage.pointer, byteCount: storage.byteCount)
      storage = copy
    }
    return try body(UnsafeMutableRawBufferPointer(start: storage.pointer, count: byteCount))
  }

  /// Shape and dtype as they are written in models: `f32[2, 3]`.
  public var typeDescription: String {
    "\(dtype)[\(shape.map(String.init).joined(separator: ", "))]"
  }

  public var description: String {
    let values = doubles()
    let shown = values.prefix(8).map { dtype.isInteger ? String(Int($0)) : String($0) }
    let more = values.count > 8 ? ", … (\(values.count) values)" : ""
    return "\(typeDescription) [\(shown.joined(separator: ", "))\(more)]"
  }
}

extension Tensor: Equatable {
  /// Tensors are equal when dtype, shape and every byte match.
  public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
    guard lhs.dtype == rhs.dtype, lhs.shape == rhs.shape else { return false }
    // memcmp: byte for byte like `elementsEqual`, without a generic call per byte in debug builds.
    return lhs.withUnsafeBytes { a in
      rhs.withUnsafeBytes { b in
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
      }
    }
  }
}

/// Swift element types that map one-to-one onto a `DType`.
public protocol TensorElement: Sendable {
  static var dtype: DType { get }
}
extension Float: TensorElement { public static var dtype: DType { .f32 } }
extension Double: TensorElement { public static var dtype: DType { .f64 } }
extension Int32: TensorElement { public static var dtype: DType { .i32 } }
extension Int64: TensorElement { public static var dtype: DType { .i64 } }

/// One 64-byte aligned allocation: wide enough for 512-bit vector loads in compiled kernels.
final class TensorStorage {
  let pointer: UnsafeMutableRawPointer
  let byteCount: Int

  init(byteCount: Int) {
    self.byteCount = byteCount
    pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
    // memset rather than `initializeMemory(as:repeating:count:)`, which debug builds run byte by byte.
    memset(pointer, 0, max(byteCount, 64))
  }

  deinit { pointer.deallocate() }
}
