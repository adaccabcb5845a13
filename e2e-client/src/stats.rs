//! Summary statistics of latency samples (milliseconds).
#![forbid(unsafe_code)]

/// Minimum, maximum, mean, median and 95th percentile of a sample set.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// 95th percentile, nearest-rank method.
    pub p95: f64,
}

/// Summarises `samples`; `None` when there are none or any is not finite.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        *sorted.get(n / 2)?
    } else {
        (sorted.get(n / 2 - 1)? + sorted.get(n / 2)?) / 2.0
    };
    // nearest rank: the smallest sample with at least 95 % of the samples at or below it
    let rank = (95 * n).div_ceil(100).max(1);
    Some(Summary {
        count: n,
        min: *sorted.first()?,
        max: *sorted.last()?,
        mean: sorted.iter().sum::<f64>() / n as f64,
        median,
        p95: *sorted.get(rank - 1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 5.0));
        let s = summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.mean, 2.5);
    }

    #[test]
    fn p95_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(summarize(&samples).unwrap().p95, 95.0);
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(summarize(&samples).unwrap().p95, 19.0);
        assert_eq!(summarize(&[7.0]).unwrap().p95, 7.0);
        assert_eq!(summarize(&[1.0, 9.0]).unwrap().p95, 9.0);
    }

    #[test]
    fn empty_or_nan_is_none() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[1.0, f64::NAN]).is_none());
    }
}
