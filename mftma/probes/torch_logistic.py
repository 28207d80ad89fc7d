"""The probe's logistic regression in torch: every fold fitted at once, on the CPU or a GPU.

It solves the problem scikit-learn's ``StandardScaler`` + ``LogisticRegression(solver="lbfgs")``
solves, fold by fold (see :mod:`mftma.probes.classification`):

- features standardized with the mean and population standard deviation of the fold's training
  rows (constant features are centred, not scaled);
- with ``K > 2`` classes, multinomial logistic regression, weights ``W`` of shape ``(K, d)`` and an
  intercept per class; with two classes, one weight vector and one intercept (binomial), as
  scikit-learn does;
- the objective ``mean_i loss_i + ||W||^2 / (2 C n)`` over the ``n`` training rows, intercepts not
  penalized; L-BFGS (history 10) from zero, stopped when the largest gradient entry is at most
  ``tol`` (scikit-learn's ``gtol`` on the same objective) or after ``max_iter`` iterations.

Every fold runs its own L-BFGS (own step lengths, curvature pairs and stopping), but one batched
matrix product per evaluation serves all folds. Products are float32, losses are summed in
float64 and standardization statistics are float64. Iterates differ from SciPy's (another line
search), so weights agree with scikit-learn's only up to the tolerance; held-out accuracies agree
within 0.5 points in the tests.

The cost is about two ``rows x features x classes`` products per fold and evaluation. When a fold's
features outnumber its training rows by :data:`SPAN_RATIO` or more, the fit runs in the span of the
fold's standardized training rows instead (an exact reduction: the L2 penalty makes any weight
component orthogonal to that span cost without changing a training loss, so the optimum lies in it).
The rows are written in an orthonormal basis of (a space holding) the span, the Q factor of the
training rows' transpose (float64): as many coordinates as rows, inner products and the penalty kept;
test rows are mapped by the same basis. The stopping rule then applies to the gradient in the span's coordinates.
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_TOL = 1e-4
HISTORY = 10
#: Fit in the span of a fold's training rows when its features are at least this many times its rows.
SPAN_RATIO = 1.5


def held_out_accuracies(features, labels, folds, *, C: float, max_iter: int, device="auto",
                        tol: float = DEFAULT_TOL) -> np.ndarray:
    """Fit one probe per fold, all at once, and return each fold's held-out accuracy.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_samples, n_features)
    labels : numpy.ndarray, shape (n_samples,)
    folds : sequence of (train_indices, test_indices)
        Rows each probe is trained on and scored on. Every training set must hold every class
        found in the training sets (at least two); test labels outside them count as errors.
    C, max_iter : float, int
        Inverse L2 strength and L-BFGS iteration limit (scikit-learn's meaning).
    device : str or torch.device
        ``"auto"`` (a GPU when present, else the CPU), ``"cpu"`` or ``"cuda[:i]"``.
    tol : float
        Stop when no gradient entry exceeds this (scikit-learn's ``tol``).

    Returns
    -------
    numpy.ndarray, shape (len(folds),)
    """
    from mftma.devices import resolve_device

    device = resolve_device(str(device))
    data = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64)).to(device)
    classes = np.unique(np.concatenate([labels[train] for train, _ in folds]))
    train = _Batch(data, labels, [train for train, _ in folds], classes)
    test = _Batch(data, labels, [test for _, test in folds], classes, transforms=train.transforms)
    theta = _fit(train, len(classes), C, max_iter, tol)
    predicted = _logits(test.features, theta).argmax(dim=2)
    correct = ((predicted == test.targets) & test.mask).sum(dim=1).double()
    return (correct / test.mask.sum(dim=1)).cpu().numpy()


class _Batch:
    """Every fold's rows, standardized (and in their training span, see :class:`_FoldTransform`), with a
    column of ones for the intercept, zero-padded to one ``(folds, rows, width + 1)`` tensor."""

    def __init__(self, data, labels, rows, classes, transforms=None):
        device = data.device
        if transforms is not None and len(transforms) != len(rows):
            raise ValueError(f"{len(transforms)} fold transforms for {len(rows)} folds")
        self.transforms = list(transforms or [])
        blocks = [self._coordinates(data, r, fold) for fold, r in enumerate(rows)]
        size, width = max(map(len, rows)), max(block.shape[1] for block in blocks)
        self.features = torch.zeros((len(rows), size, width + 1), dtype=torch.float32, device=device)
        self.targets = torch.full((len(rows), size), -1, dtype=torch.long, device=device)
        self.mask = torch.zeros((len(rows), size), dtype=torch.bool, device=device)
        for fold, (r, block) in enumerate(zip(rows, blocks)):
            self.features[fold, : len(r), : block.shape[1]] = block
            self.features[fold, : len(r), -1] = 1.0
            self.targets[fold, : len(r)] = torch.as_tensor(_encode(labels[r], classes), device=device)
            self.mask[fold, : len(r)] = True

    def _coordinates(self, data, rows, fold):
        """One fold's rows in the probe's coordinates, float32, fitting the fold's transform if it has none.

        Fold by fold, standardized in place: at the paper's size, float64 copies of every fold at once
        cost more in fresh memory than in arithmetic (the values are the same)."""
        block = data[torch.as_tensor(rows, device=data.device)]
        if fold == len(self.transforms):
            self.transforms.append(_FoldTransform.fit(block))
        return self.transforms[fold](block, overwrite=True).float()


class _FoldTransform:
    """One fold's map of rows to the probe's coordinates: standardization with the training rows'
    statistics, then, when features outnumber those rows :data:`SPAN_RATIO` times, coordinates in an
    orthonormal basis ``(features, rows)`` of a space holding the standardized training rows (their
    span, plus a direction orthogonal to all of them where the rows are dependent: its coordinate is
    0 on every training row, so its weight stays 0)."""

    def __init__(self, mean, scale, basis=None):
        self.mean, self.scale, self.basis = mean, scale, basis

    @classmethod
    def fit(cls, rows):
        mean, scale = _standardization(rows)
        if rows.shape[1] < SPAN_RATIO * rows.shape[0]:
            return cls(mean, scale)
        return cls(mean, scale, torch.linalg.qr(((rows - mean) / scale).T)[0])

    def __call__(self, rows, *, overwrite=False):
        """The coordinates of ``rows`` (float64, as the statistics); with ``overwrite``, ``rows`` (a copy
        the caller no longer needs) is standardized in place instead of allocating another array."""
        standardized = (rows if overwrite else rows.clone()).sub_(self.mean).div_(self.scale)
        return standardized if self.basis is None else standardized @ self.basis


def _standardization(rows):
    """scikit-learn's ``StandardScaler`` statistics: mean and population std, 1 for constant features."""
    mean = rows.mean(dim=0)
    variance = rows.var(dim=0, correction=0)
    # Constant up to rounding, by scikit-learn's bound.
    scaled_eps = rows.shape[0] * torch.finfo(torch.float64).eps
    constant = variance <= scaled_eps * variance + (scaled_eps * mean) ** 2
    return mean, torch.where(constant, torch.ones_like(variance), variance.sqrt())


def _encode(labels, known):
    """Class indices into ``known`` (sorted); labels not in it become -1 (never predicted)."""
    index = np.searchsorted(known, labels).clip(0, len(known) - 1)
    return np.where(known[index] == labels, index, -1)


def _fit(train: _Batch, n_classes: int, C: float, max_iter: int, tol: float) -> torch.Tensor:
    """L-BFGS from zero on every fold at once; a fold stops when its gradient is below ``tol``.

    Each fold keeps its own step length, curvature pairs and stopping state, as if fitted alone:
    the first step has unit length along the negative gradient (as SciPy's L-BFGS-B), later ones
    start at 1; :func:`_line_search` finds a step satisfying the Wolfe conditions.
    """
    objective = _Objective(train, n_classes, C)
    theta = torch.zeros((*train.features.shape[::2], objective.outputs), device=train.features.device)
    loss, grad = objective(theta)
    history = []
    step = 1.0 / grad.flatten(1).norm(dim=1).double()
    active = _gradient_above(grad, tol)
    for _ in range(max_iter):
        if not active.any():
            break
        direction = -_two_loop(grad, history) * active[:, None, None]
        new_theta, new_loss, new_grad, accepted = _line_search(objective, theta, loss, grad, direction, step, active)
        history = (history + [_curvature_pair(new_theta - theta, new_grad - grad)])[-HISTORY:]
        theta, loss, grad = new_theta, new_loss, new_grad
        active = accepted & _gradient_above(grad, tol)
        step = torch.ones_like(step)
    return theta


class _Objective:
    """Loss and gradient of every fold: mean cross-entropy + ``||W||^2 / (2 C n)``."""

    def __init__(self, train: _Batch, n_classes: int, C: float):
        self.train = train
        self.outputs = 1 if n_classes == 2 else n_classes
        counts = train.mask.sum(dim=1).float()
        self.row_weight = (train.mask.float() / counts[:, None])[:, :, None]
        # One penalty per fold on the weights; the intercept (last row of theta) is not penalized.
        self.penalty = (1.0 / (C * counts))[:, None, None].repeat(1, train.features.shape[2], 1)
        self.penalty[:, -1] = 0.0
        self.one_hot = torch.nn.functional.one_hot(train.targets.clamp(min=0), n_classes).float()
        # On a CPU the gradient's product with the transposed rows runs twice as fast from a contiguous
        # copy as from a transposed view at the quickstart's sizes (the same values, bit for bit); a GPU
        # reads the view as fast, so it is spared the copy's memory.
        self.transposed = train.features.transpose(1, 2)
        if self.transposed.device.type == "cpu":
            self.transposed = self.transposed.contiguous()

    def __call__(self, theta):
        log_probabilities = _logits(self.train.features, theta).log_softmax(dim=2)
        cross_entropy = -(self.row_weight * self.one_hot * log_probabilities).sum(dim=(1, 2), dtype=torch.float64)
        loss = cross_entropy + (self.penalty * theta**2).sum(dim=(1, 2), dtype=torch.float64) / 2
        residual = (log_probabilities.exp() - self.one_hot) * self.row_weight
        residual = residual[:, :, 1:] if self.outputs == 1 else residual
        grad = torch.baddbmm(self.penalty * theta, self.transposed, residual)
        return loss, grad


def _gradient_above(grad, tol):
    return grad.flatten(1).abs().amax(dim=1) > tol


def _curvature_pair(s, y):
    """``(s, y, rho)``; rho is 0 (the pair is ignored) for a fold without positive curvature."""
    curvature = _dot(s, y)
    return s, y, torch.where(curvature > 0, 1.0 / curvature.clamp(min=torch.finfo(s.dtype).tiny), 0.0)


def _two_loop(grad, history):
    """The L-BFGS two-loop recursion, per fold: approximate inverse Hessian times ``grad``."""
    q, alphas = grad.clone(), []
    for s, y, rho in reversed(history):
        alpha = rho * _dot(s, q)
        q -= alpha[:, None, None] * y
        alphas.append(alpha)
    if history:
        s, y, rho = history[-1]
        q *= torch.where(rho > 0, _dot(s, y) / _dot(y, y).clamp(min=torch.finfo(y.dtype).tiny), 1.0)[:, None, None]
    for (s, y, rho), alpha in zip(history, reversed(alphas)):
        q += (alpha - rho * _dot(y, q))[:, None, None] * s
    return q


def _line_search(objective, theta, loss, grad, direction, step, active, armijo=1e-4, curvature=0.9,
                 max_trials=20):
    """A step satisfying the (weak) Wolfe conditions for every active fold.

    Per fold, a bracket ``[low, high]`` of step lengths: a trial without sufficient decrease becomes
    ``high``; one with sufficient decrease but a slope still steeper than ``curvature`` times the
    initial slope becomes ``low`` and the step grows (4x) until bracketed. Trial steps inside a
    bracket minimize the cubic through its ends' losses and slopes, kept away from the ends. A fold
    whose trials all fail keeps its best sufficient-decrease step, or none (then it has converged
    to rounding and stops).
    """
    slope = _dot(grad, direction).double()
    low = _Point(torch.zeros_like(step), loss, slope, theta, grad)
    high = _Point(torch.full_like(step, float("inf")), loss, slope, None, None)
    pending, accepted = active.clone(), torch.zeros_like(active)
    for _ in range(max_trials):
        trial = theta + step.float()[:, None, None] * direction
        trial_loss, trial_grad = objective(trial)
        trial_slope = _dot(trial_grad, direction).double()
        decrease = (trial_loss <= loss + armijo * step * slope) & (trial_loss <= low.loss)
        done = pending & decrease & (trial_slope >= curvature * slope)
        low.update(pending & decrease, step, trial_loss, trial_slope, trial, trial_grad)
        high.update(pending & ~decrease, step, trial_loss, trial_slope)
        accepted |= done
        pending &= ~done
        if not pending.any():
            break
        width = high.step - low.step
        inside = _cubic_minimizer(low, high).clamp(min=low.step + 0.1 * width, max=high.step - 0.1 * width)
        step = torch.where(torch.isfinite(high.step), inside, 4 * step)
    accepted |= active & (low.step > 0)
    return low.theta, low.loss, low.grad, accepted


class _Point:
    """Per fold: a step length with its loss and slope (and parameters and gradient, if kept)."""

    def __init__(self, step, loss, slope, theta, grad):
        self.step, self.loss, self.slope = step.clone(), loss.clone(), slope.clone()
        self.theta = None if theta is None else theta.clone()
        self.grad = None if grad is None else grad.clone()

    def update(self, mask, step, loss, slope, theta=None, grad=None):
        self.step[mask], self.loss[mask], self.slope[mask] = step[mask], loss[mask], slope[mask]
        if self.theta is not None:
            self.theta[mask], self.grad[mask] = theta[mask], grad[mask]


def _cubic_minimizer(a: _Point, b: _Point):
    """Minimizer of the cubic through both points' losses and slopes; their midpoint where it has none."""
    d1 = a.slope + b.slope - 3 * (a.loss - b.loss) / (a.step - b.step)
    discriminant = d1**2 - a.slope * b.slope
    d2 = torch.sign(b.step - a.step) * discriminant.clamp(min=0).sqrt()
    minimizer = b.step - (b.step - a.step) * (b.slope + d2 - d1) / (b.slope - a.slope + 2 * d2)
    usable = torch.isfinite(minimizer) & (discriminant >= 0)
    return torch.where(usable, minimizer, (a.step + b.step) / 2)


def _dot(a, b):
    return (a * b).sum(dim=(1, 2))


def _logits(features, theta):
    """``(folds, rows, classes)`` logits; with one output column, the binomial ``[0, x.w + b]``."""
    logits = torch.bmm(features, theta)
    if theta.shape[2] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], dim=2)
    return logits
