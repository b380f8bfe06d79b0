//! The non-convex baseline `network::train_gradient` on the bundled diabetes data and on small
//! synthetic problems: it descends exactly `Network::objective`, it is bit-reproducible per seed,
//! and bad arguments are errors naming the argument.

mod common;

use std::path::PathBuf;

use common::problem;
use cvxnn::data::{add_bias, read_table, Standardizer};
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::{network_gradient, train_gradient, GradientSettings, Optimizer};
use cvxnn::CvxnnError;

/// Diabetes as `cvxnn train` prepares it without a test split: z-scored features, a bias
/// column, targets divided by their standard deviation.
fn diabetes() -> (Matrix, Vec<f64>) {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/data/diabetes.csv"
    ));
    let t = read_table(&path, "y").unwrap();
    let x = add_bias(
        &Standardizer::fit(&t.features)
            .transform(&t.features)
            .unwrap(),
    );
    let target = t.target.values().unwrap();
    let n = target.len() as f64;
    let mean = target.iter().sum::<f64>() / n;
    let std = (target.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    (x, target.iter().map(|v| v / std).collect())
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|a| a.to_bits()).collect()
}

#[test]
fn full_batch_adam_fits_diabetes() {
    let (x, y) = diabetes();
    let lambda = 1e-3;
    let s = GradientSettings {
        optimizer: Optimizer::adam(),
        width: 20,
        learning_rate: 1e-2,
        epochs: 400,
        batch_size: None,
        seed: 0,
        record_every: 100,
    };
    let out = train_gradient(&x, &y, LossKind::Squared, lambda, &s).unwrap();
    eprintln!("diabetes adam: trace {:?}, {:.3} s", out.trace, out.seconds);
    let first = out.trace[0].1;
    assert!(out.objective < 0.15 * first, "{first} -> {}", out.objective);
    // About the fit of a linear model (half its mean squared error on scaled targets is 0.24).
    assert!(out.objective < 0.27, "{}", out.objective);
    // The reported objective is the network's, exactly; the trace ends with it.
    assert_eq!(
        out.objective,
        out.network
            .objective(&x, &y, LossKind::Squared, lambda)
            .unwrap()
    );
    assert_eq!(out.trace.last(), Some(&(400, out.objective)));
    assert_eq!((out.epochs, out.steps), (400, 400));
    assert_eq!(out.network.neurons(), 20);
    assert_eq!(out.network.input_dim(), x.ncols());
    // network_gradient evaluates the same objective.
    let g = network_gradient(&out.network, &x, &y, LossKind::Squared, lambda).unwrap();
    assert_eq!(g.objective.to_bits(), out.objective.to_bits());
}

#[test]
fn same_seed_same_bits_other_seed_differs() {
    let (x, y) = problem(60, 4, LossKind::Squared, 1);
    for (optimizer, batch) in [
        (Optimizer::adam(), None),
        (Optimizer::adam(), Some(16)),
        (Optimizer::sgd(), Some(10)),
    ] {
        let s = GradientSettings {
            optimizer,
            width: 12,
            learning_rate: 1e-2,
            epochs: 50,
            batch_size: batch,
            seed: 5,
            record_every: 10,
        };
        let a = train_gradient(&x, &y, LossKind::Squared, 1e-2, &s).unwrap();
        let b = train_gradient(&x, &y, LossKind::Squared, 1e-2, &s).unwrap();
        assert_eq!(
            bits(a.network.hidden.as_slice()),
            bits(b.network.hidden.as_slice())
        );
        assert_eq!(bits(&a.network.alpha), bits(&b.network.alpha));
        assert_eq!(a.trace, b.trace);
        let c = train_gradient(
            &x,
            &y,
            LossKind::Squared,
            1e-2,
            &GradientSettings { seed: 6, ..s },
        )
        .unwrap();
        assert_ne!(bits(&a.network.alpha), bits(&c.network.alpha));
        assert_ne!(a.objective, c.objective);
    }
}

#[test]
fn minibatch_sgd_and_logistic_adam_train() {
    let (x, y) = problem(80, 3, LossKind::Squared, 2);
    let s = GradientSettings {
        optimizer: Optimizer::sgd(),
        width: 16,
        learning_rate: 1e-2,
        epochs: 200,
        batch_size: Some(16),
        ..GradientSettings::default()
    };
    let out = train_gradient(&x, &y, LossKind::Squared, 1e-3, &s).unwrap();
    assert!(out.objective < 0.5 * out.trace[0].1, "{:?}", out.trace);
    assert_eq!(out.steps, 200 * 5);

    let (x, y) = problem(80, 3, LossKind::Logistic, 3);
    let s = GradientSettings {
        width: 16,
        epochs: 300,
        ..GradientSettings::default()
    };
    let out = train_gradient(&x, &y, LossKind::Logistic, 1e-3, &s).unwrap();
    assert!(out.objective < 0.6 * out.trace[0].1, "{:?}", out.trace);
    assert_eq!(
        out.objective,
        out.network
            .objective(&x, &y, LossKind::Logistic, 1e-3)
            .unwrap()
    );
}

fn arg_name(r: cvxnn::Result<cvxnn::network::GradientOutcome>) -> String {
    match r {
        Err(CvxnnError::InvalidArgument { name, .. }) => name,
        Err(e) => panic!("expected an invalid argument, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_arguments_are_errors() {
    let (x, y) = problem(10, 3, LossKind::Squared, 4);
    let ok = GradientSettings {
        width: 3,
        epochs: 2,
        ..GradientSettings::default()
    };
    let sq = LossKind::Squared;
    assert!(train_gradient(&x, &y, sq, 0.0, &ok).is_ok());
    for lambda in [-1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(arg_name(train_gradient(&x, &y, sq, lambda, &ok)), "lambda");
    }
    let bad = |s: GradientSettings| arg_name(train_gradient(&x, &y, sq, 1e-3, &s));
    assert_eq!(
        bad(GradientSettings {
            width: 0,
            ..ok.clone()
        }),
        "width"
    );
    for lr in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
        assert_eq!(
            bad(GradientSettings {
                learning_rate: lr,
                ..ok.clone()
            }),
            "lr"
        );
    }
    assert_eq!(
        bad(GradientSettings {
            epochs: 0,
            ..ok.clone()
        }),
        "epochs"
    );
    assert_eq!(
        bad(GradientSettings {
            batch_size: Some(0),
            ..ok.clone()
        }),
        "batch-size"
    );
    assert_eq!(
        bad(GradientSettings {
            optimizer: Optimizer::Sgd { momentum: 1.0 },
            ..ok.clone()
        }),
        "momentum"
    );
    assert_eq!(
        bad(GradientSettings {
            optimizer: Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 0.0
            },
            ..ok.clone()
        }),
        "eps"
    );
    // Data: wrong target count, non-finite entries, labels that are not ±1 for logistic.
    assert!(matches!(
        train_gradient(&x, &y[..9], sq, 1e-3, &ok),
        Err(CvxnnError::Shape(_))
    ));
    let mut xn = x.clone();
    xn.set(3, 1, f64::NAN);
    assert_eq!(arg_name(train_gradient(&xn, &y, sq, 1e-3, &ok)), "x");
    let mut yn = y.clone();
    yn[2] = f64::INFINITY;
    assert_eq!(arg_name(train_gradient(&x, &yn, sq, 1e-3, &ok)), "y");
    assert_eq!(
        arg_name(train_gradient(&x, &y, LossKind::Logistic, 1e-3, &ok)),
        "loss"
    );
    // A learning rate that makes training diverge is named.
    let wild = GradientSettings {
        optimizer: Optimizer::sgd(),
        learning_rate: 1e8,
        epochs: 100,
        ..ok
    };
    let err = train_gradient(&x, &y, sq, 1e-3, &wild).unwrap_err();
    assert!(err.to_string().contains("`lr`"), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}
