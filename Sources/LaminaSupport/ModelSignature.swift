import Foundation

/// What a compiled model takes and gives, as its library describes itself.
///
/// The code generator writes it into the library as JSON (`lamina_model_signature()`); the runtime
/// reads it back to name inputs, check shapes and bind symbolic dimensions without knowing the IR.
public struct ModelSignature: Codable, Sendable, Equatable {
  /// One tensor of the interface.
  public struct Entry: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: String
    /// Each dimension as text: `"64"`, `"batch"` or a product such as `"8*batch"`.
    public var shape: [String]
    /// For inputs: whether `forward` needs it (a label does not).
    public var forward: Bool?
    /// For state: true for model state (owned by no optimizer, saved with the weights); absent for
    /// optimizer state.
    public var modelState: Bool?

    public init(name: String, dtype: String, shape: [String], forward: Bool? = nil) {
      self.name = name
      self.dtype = dtype
      self.shape = shape
      self.forward = forward
    }

    public var elementType: DType? { DType(rawValue: dtype) }

    /// The concrete shape once the symbols are bound; nil when a symbol is missing.
    public func concreteShape(_ bindings: [String: Int]) -> [Int]? {
      var result: [Int] = []
      for dim in shape {
        guard let value = Entry.evaluate(dim, bindings) else { return nil }
        result.append(value)
      }
      return result
    }

    /// A dimension's size (`"64"`, `"batch"`, `"8*batch"`); nil when a symbol is unbound. A product
    /// past `Int.max` gives `Int.max`, which no tensor can have, so allocating it fails with a message.
    public static func evaluate(_ dim: String, _ bindings: [String: Int]) -> Int? {
      var value = 1
      for factor in dim.split(separator: "*") {
        guard let number = Int(factor) ?? bindings[String(factor)] else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: number)
        value = overflow ? Int.max : product
      }
      return value
    }

    public var typeDescription: String { "\(dtype)[\(shape.joined(separator: ", "))]" }
  }

  /// The ABI the library was generated for; the runtime refuses others.
  public var abi: Int
  public var model: String
  /// Symbolic dimensions, in the order `forward` takes their values.
  public var symbols: [String]
  public var inputs: [Entry]
  public var params: [Entry]
  public var outputs: [Entry]
  public var losses: [Entry]
  /// Optimizer state and model state (`modelState == true`), saved with the parameters in
  /// checkpoints; model state also in weights files.
  public var states: [Entry]
  /// Training steps `lamina_train_step` runs, by index.
  public var steps: [Step]

  /// A training step: its name, the loss it minimizes and the inputs it reads.
  public struct Step: Codable, Sendable, Equatable {
    public var name: String
    public var loss: String
    /// The inputs the step's loss and updates read, in signature order; nil in libraries made
    /// before steps listed them (then: every input). A GAN's generator step reads none.
    public var inputs: [String]?
    public init(name: String, loss: String, inputs: [String]? = nil) {
      self.name = name
      self.loss = loss
      self.inputs = inputs
    }
  }

  public init(
    abi: Int, model: String, symbols: [String], inputs: [Entry], params: [Entry], outputs: [Entry],
    losses: [Entry], states: [Entry] = [], steps: [Step] = []
  ) {
    self.states = states
    self.steps = steps
    self.abi = abi
    self.model = model
    self.symbols = symbols
    self.inputs = inputs
    self.params = params
    self.outputs = outputs
    self.losses = losses
  }

  /// Model state: the states no optimizer owns (batch norm's running statistics).
  public var modelStates: [Entry] { states.filter { $0.modelState == true } }

  /// The model state a weights file (or a parameters dictionary) holds: each under its own name
  /// (PyTorch's state_dict) or `state.NAME` (a training checkpoint), by state name.
  public func modelStates(in tensors: [String: Tensor]) -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for entry in modelStates {
      if let tensor = tensors[entry.name] ?? tensors["state." + entry.name] {
        result[entry.name] = tensor
      }
    }
    return result
  }

  public func json() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }

  public static func decode(_ json: String) throws -> ModelSignature {
    try JSONDecoder().decode(ModelSignature.self, from: Data(json.utf8))
  }
}
