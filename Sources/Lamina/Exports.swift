@_exported import LaminaIR
@_exported import LaminaSupport
