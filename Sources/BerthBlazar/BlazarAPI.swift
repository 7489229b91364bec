import Hummingbird

enum BlazarAPIPlaceholder {}
