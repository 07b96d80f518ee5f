"""PNG output of matplotlib figures (reports, debugger plots), written atomically."""


def save_png(fig, path: str, dpi: int = 110):
    """Write `fig` as PNG through a temporary file (a failure leaves any old file intact)."""
    import io

    import matplotlib.pyplot as plt

    from tfquant.converter import save_atomically
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    save_atomically(buffer.getvalue(), path)
