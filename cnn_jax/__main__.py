from cnn_jax.main import main

main()
