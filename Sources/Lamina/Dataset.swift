import Foundation
import LaminaSupport

/// Named tensors sharing their first dimension (the rows), cut into mini-batches for training.
///
///     let train = try Dataset(directory: "examples/data/digits/train", for: compiled.signature)
///     for rows in train.batchIndices(size: 32, order: train.shuffledOrder(seed: 0, epoch: 0)) {
///       let batch = train.gather(rows)   // ["x": f32[32, 64], "label": i32[32]]
///     }
///
/// Shuffling is deterministic: the order of an epoch depends only on the seed and the epoch number,
/// so a run resumed from a checkpoint sees the same batches as one that was never interrupted.
public struct Dataset: Sendable {
  /// The tensors, by name; each has `count` rows along its first axis.
  public let tensors: [String: Tensor]
  /// The number of rows (examples).
  public let count: Int

  /// Tensors with the same first dimension; throws when they disagree, or one is a scalar.
  public init(_ tensors: [String: Tensor]) throws {
    guard !tensors.isEmpty else { throw RunError("a dataset needs at least one tensor") }
    for (name, tensor) in tensors where tensor.rank == 0 {
      throw RunError("dataset tensor '\(name)' is a scalar; every tensor needs a first (row) axis")
    }
    let rows = Set(tensors.values.map { $0.shape[0] })
    guard rows.count == 1, let count = rows.first else {
      let shapes = tensors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.shape)" }
      throw RunError(
        "dataset tensors must have the same first dimension, got \(shapes.joined(separator: ", "))")
    }
    guard count > 0 else { throw RunError("the dataset is empty (0 rows)") }
    self.tensors = tensors
    self.count = count
  }

  /// Loads one `NAME.npy` per model input from `directory`.
  ///
  /// Every input of the model must have a file; a `.npy` file named after no input is an error too
  /// (a typo in a file name would otherwise silently drop the data).
  public init(directory: String, for signature: ModelSignature) throws {
    try self.init(directory: directory, inputs: signature.inputs.map(\.name))
  }

  /// Loads one `NAME.npy` per name in `inputs` from `directory`.
  public init(directory: String, inputs: [String]) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw FileError(path: directory, reason: "no such directory (expected one .npy per input)")
    }
    let files = try FileManager.default.contentsOfDirectory(atPath: directory)
      .filter { $0.hasSuffix(".npy") }.map { String($0.dropLast(4)) }.sorted()
    let unknown = files.filter { !inputs.contains($0) }
    if !unknown.isEmpty {
      throw FileError(
        path: directory,
        reason:
          "\(unknown.map { "\($0).npy" }.joined(separator: ", ")) \(unknown.count == 1 ? "names no" : "name no") model input (inputs: \(inputs.joined(separator: ", ")))"
      )
    }
    let missing = inputs.filter { !files.contains($0) }
    if !missing.isEmpty {
      throw FileError(
        path: directory,
        reason:
          "missing \(missing.map { "\($0).npy" }.joined(separator: ", ")) for model input\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", "))"
      )
    }
    var tensors: [String: Tensor] = [:]
    for name in inputs { tensors[name] = try NPY.read(contentsOf: directory + "/" + name + ".npy") }
    do {
      try self.init(tensors)
    } catch let error as RunError {
      throw FileError(path: directory, reason: error.description)
    }
  }

  /// The rows in a random order that depends only on `seed` and `epoch` (a permutation of 0..<count).
  public func shuffledOrder(seed: UInt64, epoch: Int) -> [Int] {
    var generator = SeededGenerator(seed: seed, stream: "dataset.shuffle.epoch.\(epoch)")
    var order = Array(0..<count)
    // Fisher-Yates with our own generator: `shuffle(using:)`'s algorithm is not guaranteed stable
    // across Swift versions, and checkpoints must resume with the same batches.
    if count > 1 {
      for index in stride(from: count - 1, to: 0, by: -1) {
        let other = Int(generator.next() % UInt64(index + 1))
        order.swapAt(index, other)
      }
    }
    return order
  }

  /// The rows of each batch of `size`, in `order` (the natural order when nil). The last batch keeps
  /// the remaining rows when `count` is not a multiple of `size`.
  public func batchIndices(size: Int, order: [Int]? = nil) -> [ArraySlice<Int>] {
    precondition(size > 0, "batch size must be positive")
    let order = order ?? Array(0..<count)
    return stride(from: 0, to: order.count, by: size).map {
      order[$0..<min($0 + size, order.count)]
    }
  }

  /// The number of batches of `size` in an epoch, counting a last partial one.
  public func batchCount(size: Int) -> Int { (count + size - 1) / size }

  /// The given rows of every tensor, gathered into contiguous tensors.
  public func gather<Rows: Collection<Int>>(_ rows: Rows) -> [String: Tensor] {
    tensors.mapValues { Dataset.gather(rows, of: $0) }
  }

  /// Every batch of an epoch, gathered: shuffled by `(seed, epoch)`, or in order when `seed` is nil.
  public func batches(size: Int, seed: UInt64? = nil, epoch: Int = 0) -> [[String: Tensor]] {
    let order = seed.map { shuffledOrder(seed: $0, epoch: epoch) }
    return batchIndices(size: size, order: order).map { gather($0) }
  }

  static func gather<Rows: Collection<Int>>(_ rows: Rows, of tensor: Tensor) -> Tensor {
    let rowBytes = tensor.byteCount / max(tensor.shape[0], 1)
    var result = Tensor(zeros: tensor.dtype, shape: [rows.count] + tensor.shape.dropFirst())
    guard rowBytes > 0 else { return result }
    tensor.withUnsafeBytes { source in
      result.withUnsafeMutableBytes { destination in
        var offset = 0
        for row in rows {
          precondition(row >= 0 && row < tensor.shape[0], "row \(row) out of range")
          destination.baseAddress!.advanced(by: offset).copyMemory(
            from: source.baseAddress!.advanced(by: row * rowBytes), byteCount: rowBytes)
          offset += rowBytes
        }
      }
    }
    return result
  }
}
