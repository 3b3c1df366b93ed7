"""The Intelligent Operations Center: city-wide figures, the daily rollup behind them, the dashboard page."""
