// Filled in by the op groups under construction.
extension OpRegistry {
  static let linearAlgebraOps: [OpDefinition] = []
  static let reductionOps: [OpDefinition] = []
  static let shapeOps: [OpDefinition] = []
  static let lossOps: [OpDefinition] = []
}
