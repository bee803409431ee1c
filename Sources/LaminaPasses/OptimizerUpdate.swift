import LaminaIR
import LaminaSupport

/// Builds each training step's parameter updates as IR, from its optimizer and gradients.
///
/// Per step: a step counter (state `STEP.step`), the learning rate from its schedule, global-norm
/// gradient clipping when `clip_norm` is set, then the optimizer's update rule per parameter with
/// its state (momentum, moment estimates) declared as `state` and written back with `update`.
/// Update rules follow PyTorch's `torch.optim` (SGD without dampening; Adam with bias correction;
/// AdamW's decoupled decay; RMSprop and Adagrad with `eps` outside the square root). Model state
/// update rules (`Graph.stateUpdates`) become updates of every step whose loss runs their trigger.
/// - Precondition: the autodiff pass has run.
///
///     %lr = lr_schedule(%train.step) {lr = 0.1}         update train %w = %w.next
///     %w.next = sub(%w, mul(%lr, %grad.w))    →      update train %train.step = %train.step.next
public struct OptimizerUpdate: GraphPass {
  public static let name = "optimizer"
  public static let summary =
    "Builds the optimizer's parameter updates and state for each training step."

  public init() {}

  public func run(on graph: inout Graph, context: inout PassContext) throws {
    for step in graph.trainSteps where !graph.assignments.contains(where: { $0.step == step.name })
    {
      let entries = graph.gradients.filter { $0.step == step.name }
      guard !entries.isEmpty else { continue }
      do {
        try build(step, entries, in: &graph)
        addModelStateUpdates(of: step, to: &graph)
      } catch {
        context.diagnostics.error("\(step.optimizer): \(error.message)", at: step.location)
      }
    }
    try context.diagnostics.throwIfErrors()
  }

  /// The model state updates `step` applies: those whose trigger its loss computation runs (a
  /// batch norm the loss passes through updates its running statistics; one it does not, not).
  private func addModelStateUpdates(of step: TrainStep, to graph: inout Graph) {
    guard let loss = graph.losses.first(where: { $0.name == step.lossName })?.value else { return }
    let lossNodes = Set(graph.nodesNeeded(for: [loss]))
    let definitions = graph.definitions()
    for update in graph.stateUpdates {
      if let trigger = update.trigger {
        guard case .node(let index)? = definitions[trigger.index], lossNodes.contains(index)
        else { continue }
      }
      graph.assignments.append(
        Assignment(step: step.name, target: update.target, value: update.value))
    }
  }

  private func build(_ step: TrainStep, _ entries: [ParameterGradient], in graph: inout Graph)
    throws(ShapeError)
  {
    let attributes = step.attributes
    func number(_ name: String, _ fallback: Double) -> Double {
      attributes[name]?.doubleValue ?? fallback
    }
    let dtype = graph.type(of: entries[0].parameter).dtype
    let scalar = TensorType.scalar(dtype)
    let counter = graph.addState(
      name: "\(step.name).step", type: scalar, initializer: Initializer("zeros"), step: step.name,
      location: step.location)
    var builder = GradientBuilder(graph: graph, location: step.location)

    // t counts finished steps: 0 on the first update.
    var scheduleAttributes: [String: Attribute] = ["lr": .float(number("lr", 0.01))]
    for name in ["schedule", "warmup_steps", "decay_steps", "decay_rate"] {
      if let value = attributes[name] { scheduleAttributes[name] = value }
    }
    let lr = try builder.op(Ops.lrSchedule, [counter], scheduleAttributes)
    builder.graph.rename(lr, to: "\(step.name).lr")
    let nextCount = try builder.add(counter, builder.constant(1, like: counter))

    // Global-norm clipping: g ← g · min(1, clip / (‖g‖ + 1e-6)) over all of the step's gradients.
    var gradients = entries.map(\.gradient)
    if let clip = attributes["clip_norm"]?.doubleValue {
      let squares = try builder.op(Ops.l2, gradients)
      let norm = try builder.op(Ops.sqrt, [squares])
      builder.graph.rename(norm, to: "\(step.name).grad_norm")
      let ratio = try builder.div(
        builder.constant(clip, like: norm), builder.add(norm, builder.constant(1e-6, like: norm)))
      let factor = try builder.op(Ops.minimum, [ratio, builder.constant(1, like: norm)])
      gradients = try gradients.map { gradient throws(ShapeError) in
        try builder.mul(gradient, factor)
      }
    }

    var assignments: [Assignment] = []
    func state(_ parameter: ValueID, _ suffix: String) -> ValueID {
      let name = "\(builder.graph[parameter].name).\(suffix)"
      return builder.graph.addState(
        name: name, type: builder.type(of: parameter), initializer: Initializer("zeros"),
        step: step.name,
        location: step.location)
    }
    func assign(_ target: ValueID, _ value: ValueID) {
      if builder.graph[value].name.first?.isNumber == true {
        builder.graph.rename(value, to: "\(builder.graph[target].name).next")
      }
      assignments.append(Assignment(step: step.name, target: target, value: value))
    }
    let weightDecay = number("weight_decay", 0)

    for (entry, clipped) in zip(entries, gradients) {
      let w = entry.parameter
      var g = clipped
      switch step.optimizer {
      case "sgd":
        if weightDecay != 0 { g = try builder.add(g, builder.scale(w, by: weightDecay)) }
        let momentum = number("momentum", 0)
        if momentum != 0 {
          // v ← μ v + g; step along v (or g + μ v with Nesterov).
          let velocity = state(w, "velocity")
          let v = try builder.add(builder.scale(velocity, by: momentum), g)
          assign(velocity, v)
          g =
            attributes["nesterov"]?.boolValue == true
            ? try builder.add(g, builder.scale(v, by: momentum)) : v
        }
        assign(w, try builder.sub(w, builder.mul(lr, g)))
      case "adam", "adamw":
        let (beta1, beta2, eps) = (
          number("beta1", 0.9), number("beta2", 0.999), number("eps", 1e-8)
        )
        var decayed = w
        if step.optimizer == "adamw" {
          // Decoupled decay: w ← w - lr·λ·w before the Adam step.
          if weightDecay != 0 {
            decayed = try builder.sub(w, builder.mul(lr, builder.scale(w, by: weightDecay)))
          }
        } else if weightDecay != 0 {
          g = try builder.add(g, builder.scale(w, by: weightDecay))
        }
        let firstMoment = state(w, "m")
        let secondMoment = state(w, "v")
        // m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  w ← w - lr·m̂/(√v̂ + ε), m̂ = m/(1-β₁ᵗ), v̂ = v/(1-β₂ᵗ)
        let m = try builder.add(
          builder.scale(firstMoment, by: beta1), builder.scale(g, by: 1 - beta1))
        let v = try builder.add(
          builder.scale(secondMoment, by: beta2), builder.scale(builder.mul(g, g), by: 1 - beta2))
        assign(firstMoment, m)
        assign(secondMoment, v)
        let correction1 = try builder.sub(
          builder.constant(1, like: nextCount),
          builder.op(Ops.pow, [builder.constant(beta1, like: nextCount), nextCount]))
        let correction2 = try builder.sub(
          builder.constant(1, like: nextCount),
          builder.op(Ops.pow, [builder.constant(beta2, like: nextCount), nextCount]))
        let mHat = try builder.div(m, correction1)
        let vHat = try builder.div(v, correction2)
        let stepValue = try builder.div(
          mHat, builder.add(builder.op(Ops.sqrt, [vHat]), builder.constant(eps, like: vHat)))
        assign(w, try builder.sub(decayed, builder.mul(lr, stepValue)))
      case "rmsprop":
        if weightDecay != 0 { g = try builder.add(g, builder.scale(w, by: weightDecay)) }
        let (alpha, eps, momentum) = (
          number("alpha", 0.99), number("eps", 1e-8), number("momentum", 0)
        )
        let square = state(w, "square_avg")
        // s ← αs + (1-α)g²;  u = g/(√s + ε);  with momentum b ← μb + u, step along b.
        let s = try builder.add(
          builder.scale(square, by: alpha), builder.scale(builder.mul(g, g), by: 1 - alpha))
        assign(square, s)
        var update = try builder.div(
          g, builder.add(builder.op(Ops.sqrt, [s]), builder.constant(eps, like: s)))
        if momentum != 0 {
          let buffer = state(w, "momentum_buffer")
          update = try builder.add(builder.scale(buffer, by: momentum), update)
          assign(buffer, update)
        }
        assign(w, try builder.sub(w, builder.mul(lr, update)))
      case "adagrad":
        if weightDecay != 0 { g = try builder.add(g, builder.scale(w, by: weightDecay)) }
        let eps = number("eps", 1e-10)
        let squares = state(w, "sum_of_squares")
        // Σ ← Σ + g²;  w ← w - lr·g/(√Σ + ε)
        let total = try builder.add(squares, builder.mul(g, g))
        assign(squares, total)
        assign(
          w,
          try builder.sub(
            w,
            builder.mul(
              lr,
              builder.div(
                g, builder.add(builder.op(Ops.sqrt, [total]), builder.constant(eps, like: total)))))
        )
      default:
        throw ShapeError("no update rule for optimizer '\(step.optimizer)'")
      }
    }
    assign(counter, nextCount)
    graph = builder.graph
    graph.assignments += assignments
  }
}
