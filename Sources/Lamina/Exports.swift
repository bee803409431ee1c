// `import Lamina` brings the types users need: tensors and file formats, the IR, and passes.
@_exported import LaminaIR
@_exported import LaminaONNX
@_exported import LaminaPasses
@_exported import LaminaRuntime
@_exported import LaminaSupport

@_exported import enum LaminaCodegenC.CRuntimeSources
@_exported import struct LaminaCodegenC.EntryPointStatistics
@_exported import struct LaminaCodegenC.GeneratedModel
