import LaminaIR
