"""LARS: SGD with momentum whose step per variable is scaled by a trust ratio (You et al. 2017).

For each variable w with gradient g, as the SimCLR code applies it:

    g = g + weight_decay * w                      if w is decayed
    trust = eta * ||w|| / ||g||  (1 if a norm is 0) if w is layer-adapted, else 1
    v = momentum * v + lr * trust * g
    w = w - v                                     (nesterov: w - (momentum * v + lr * trust * g))

Weight decay lives inside the update (coupled L2, scaled by the trust ratio), unlike Keras'
decoupled `weight_decay` argument, which this class therefore never passes on to Keras.
Which variables are decayed or adapted is decided once, in `build`, by variable rank or by
identity, never by name substrings (Keras 3 variable names are short, e.g. 'kernel').
"""
from typing import Callable, Iterable, Optional

import keras
import tensorflow as tf

VariablePredicate = Callable[[object], bool]


def default_exclusion(variable) -> bool:
    """True for variables of rank <= 1: batch-norm gamma/beta and biases.

    Args:
      variable: a keras.Variable or tf.Variable.
    """
    return len(variable.shape) <= 1


def _tf_variable(variable):
    """The tf.Variable behind a keras.Variable (a MirroredVariable under a strategy); a
    tf.Variable or one replica's component of a distributed variable as it is."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def _identity_key(variable) -> int:
    """A key shared by a keras.Variable and the tf.Variable it wraps."""
    return id(_tf_variable(variable))


def exclude_variables(variables: Iterable) -> VariablePredicate:
    """A predicate excluding rank <= 1 variables and the given variables (by identity).

    Used e.g. to keep the supervised head out of LARS weight decay, as the original code does:
    `LARS(lr, exclude_from_weight_decay=exclude_variables(head.trainable_variables))`.

    Args:
      variables: keras.Variables (or tf.Variables) to exclude besides the default ones.

    Returns:
      A callable `variable -> bool`.
    """
    # The closure holds the variables, so their ids cannot be reused by new objects.
    held = list(variables)

    def predicate(variable) -> bool:
        key = _identity_key(variable)
        return default_exclusion(variable) or any(key == _identity_key(h) for h in held)

    return predicate


@keras.saving.register_keras_serializable(package="simclr")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling with classic (optionally Nesterov) momentum."""

    def __init__(self, learning_rate, momentum: float = 0.9, weight_decay: float = 1e-4,
                 trust_coefficient: float = 0.001, nesterov: bool = False,
                 exclude_from_weight_decay: Optional[VariablePredicate] = None,
                 exclude_from_layer_adaptation: Optional[VariablePredicate] = None,
                 name: str = "lars", **kwargs):
        """Configures the optimizer.

        Args:
          learning_rate: float, LearningRateSchedule or callable.
          momentum: momentum of the velocity.
          weight_decay: L2 coefficient added to the gradient of decayed variables.
          trust_coefficient: eta of the trust ratio.
          nesterov: use Nesterov momentum.
          exclude_from_weight_decay: `variable -> bool`; True means no weight decay.
            None means `default_exclusion` (rank <= 1).
          exclude_from_layer_adaptation: `variable -> bool`; True means trust ratio 1. None means
            the weight-decay exclusion.
          name: name of the optimizer.
          **kwargs: other keras.optimizers.Optimizer arguments (clipnorm, ...). Keras' decoupled
            weight decay is never enabled: `weight_decay` above is the LARS one.
        """
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        # Not `self.weight_decay`: Keras would then also apply its decoupled decay.
        self.lars_weight_decay = float(weight_decay)
        self.trust_coefficient = float(trust_coefficient)
        self.nesterov = bool(nesterov)
        self._exclude_wd_fn = exclude_from_weight_decay or default_exclusion
        self._exclude_adapt_fn = exclude_from_layer_adaptation or self._exclude_wd_fn

    def build(self, var_list):
        """Creates one momentum slot per variable and fixes the per-variable choices.

        Call inside `strategy.scope()` before the first step under a distribution strategy.

        Args:
          var_list: the trainable variables, in the order gradients will be given.
        """
        if self.built:
            return
        super().build(var_list)
        # Decided once here: update_step may receive per-device components of these variables,
        # which it maps back through _get_variable_index.
        self._use_decay = tuple(not self._exclude_wd_fn(v) for v in var_list)
        self._use_adaptation = tuple(not self._exclude_adapt_fn(v) for v in var_list)
        self.momentums = self.add_optimizer_variables(var_list, "momentum")

    def uses_weight_decay(self, variable) -> bool:
        """Whether `variable` (one the optimizer was built with) is decayed inside LARS."""
        return self._use_decay[self._get_variable_index(variable)]

    def uses_layer_adaptation(self, variable) -> bool:
        """Whether `variable` (one the optimizer was built with) gets a trust ratio."""
        return self._use_adaptation[self._get_variable_index(variable)]

    def _trust_ratio(self, w, g):
        """eta * ||w|| / ||g||, or 1 when either norm is 0; a scalar of w's dtype."""
        # sqrt(2 * l2_loss): one pass over the tensor (tf.norm squares into a temporary first).
        w_norm = tf.sqrt(2.0 * tf.nn.l2_loss(w))
        g_norm = tf.sqrt(2.0 * tf.nn.l2_loss(g))
        # Divide by a safe denominator so the unused branch holds no inf/nan.
        safe_g_norm = tf.where(g_norm > 0.0, g_norm, tf.ones_like(g_norm))
        ratio = self.trust_coefficient * w_norm / safe_g_norm
        return tf.where((w_norm > 0.0) & (g_norm > 0.0), ratio, tf.ones_like(ratio))

    def update_step(self, gradient, variable, learning_rate):
        """One LARS step for one variable, updating it and its momentum slot in place.

        Args:
          gradient: the (all-reduced) gradient, same shape as `variable`; cast to its dtype.
          variable: a variable the optimizer was built with, or under MirroredStrategy one of
            its per-device components.
          learning_rate: scalar tensor, the rate at the current iteration.
        """
        index = self._get_variable_index(variable)
        w = tf.convert_to_tensor(_tf_variable(variable))
        dtype = w.dtype
        g = tf.cast(tf.convert_to_tensor(gradient), dtype)
        lr = tf.cast(learning_rate, dtype)
        if self._use_decay[index]:
            g = g + tf.cast(self.lars_weight_decay, dtype) * w
        if self._use_adaptation[index]:
            lr = lr * self._trust_ratio(w, g)
        # TensorFlow's fused kernel, one pass, with its rate 1 and the step lr * g as gradient:
        # v = momentum * v + lr * g, then w = w - v, or (nesterov) w = w - (momentum * v + lr * g).
        # In an update context .handle is this replica's component of a distributed variable.
        tf.raw_ops.ResourceApplyMomentum(
            var=_tf_variable(variable).handle, accum=_tf_variable(self.momentums[index]).handle,
            lr=tf.ones([], dtype), grad=lr * g, momentum=tf.cast(self.momentum, dtype),
            use_locking=False, use_nesterov=self.nesterov)

    def get_config(self) -> dict:
        """Serialisable settings; the exclusion predicates are code and are not included."""
        config = super().get_config()
        config.update({
            "momentum": self.momentum,
            "weight_decay": self.lars_weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "nesterov": self.nesterov,
        })
        return config
